"""The one-box runtime: gateway, process supervision, launchers of Kafka, PostgreSQL, Mosquitto."""
