"""The wire contracts, one module per boundary, used by every side of it.

``devices``   device ids and the F2 model list
``topics``    MQTT topic grammar: uplink ``cmnd/...``, downlink ``ctrl/...``, ``ctrl-resp/...``
``records``   Kafka topic names and record values (raw, dead letter)
``commands``  downlink actions per component kind, the command payload and the device's reply
``invocation``  the connector -> function batch (body and headers), encoded and decoded here
``functions`` the stack.yml annotations and labels the connector, autoscaler and runtime read
"""
