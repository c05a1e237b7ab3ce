"""The decode function: raw MQTT records in, one decoded record per measurement out."""
