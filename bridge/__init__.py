"""MQTT -> Kafka bridge: F2 messages into ``raw_iot_data``, each acknowledged after Kafka's ack."""
