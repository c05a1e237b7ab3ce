"""Mosquitto configuration for f2pipe: listeners, password file and ACL rendering."""
