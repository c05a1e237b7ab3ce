"""The gateway's Prometheus series, named as OpenFaaS's gateway names them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """Invocations and their durations per function and status, and replicas per function."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "gateway_function_invocation_total",
            "Function invocations by status code",
            ["function_name", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_functions_seconds",
            "Function invocation duration",
            ["function_name", "code"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.replicas = Gauge(
            "gateway_service_count",
            "Running replicas per function",
            ["function_name"],
            registry=self.registry,
        )

    def observe(self, function: str, status: int, seconds: float) -> None:
        code = str(status)
        self.invocations.labels(function, code).inc()
        self.duration.labels(function, code).observe(seconds)
