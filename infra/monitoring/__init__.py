"""Monitoring of the local stack: Prometheus config and runtime, scrape targets, Grafana files."""
