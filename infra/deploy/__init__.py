"""Deploy files and their helpers: Docker, faasd, Kubernetes, Mosquitto, schema."""
