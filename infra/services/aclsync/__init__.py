"""aclsync: the agent beside Mosquitto that pulls the device ACL and CRL from S3 and reloads it."""
