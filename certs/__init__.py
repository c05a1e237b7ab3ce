"""certs: tooling for f2pipe's internal CA, broker certificate, service credentials and devices."""
