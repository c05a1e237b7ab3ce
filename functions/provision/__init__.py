"""The provisioning function: device certificates, the device registry, ACL and CRL."""
