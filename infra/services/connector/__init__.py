"""Kafka connector: drives OpenFaaS functions with batches of the Kafka topics they annotate."""
