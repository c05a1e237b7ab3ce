"""``make chaos``: every part killed (and the brokers paused) under a QoS 1 load; what was lost."""
