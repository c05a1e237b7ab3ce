"""What the local runtime starts: Kafka, PostgreSQL, Mosquitto, Prometheus."""
