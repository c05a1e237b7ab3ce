"""Prometheus metrics of the connector, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConnectorMetrics:
    """What ``/metrics`` serves; every series is labelled with the function it concerns."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "f2_connector_consumer_lag",
            "Records of the partition not yet committed by the function's consumer group",
            ["function", "topic", "partition"],
            registry=r,
        )
        self.batches = Counter(
            "f2_connector_batches_total",
            "Batches finished, by outcome (committed, abandoned)",
            ["function", "topic", "outcome"],
            registry=r,
        )
        self.records = Counter(
            "f2_connector_records_delivered_total",
            "Records the function answered 2xx for",
            ["function", "topic"],
            registry=r,
        )
        self.batch_size = Histogram(
            "f2_connector_batch_size_records",
            "Records per batch cut from a partition",
            ["function"],
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.batch_bytes = Histogram(
            "f2_connector_batch_size_bytes",
            "Body bytes per batch cut from a partition",
            ["function"],
            buckets=(1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 4e6),
            registry=r,
        )
        self.batch_duration = Histogram(
            "f2_connector_batch_duration_seconds",
            "From cutting a batch to its delivery (retries and splits included)",
            ["function"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.invocations = Counter(
            "f2_connector_invocations_total",
            "HTTP calls to the function, by status (code, timeout, connection)",
            ["function", "status"],
            registry=r,
        )
        self.retries = Counter(
            "f2_connector_retries_total",
            "Calls or dead-letter writes repeated after a retryable failure, by reason",
            ["function", "reason"],
            registry=r,
        )
        self.splits = Counter(
            "f2_connector_batch_splits_total",
            "Refused (4xx) batches split in two to isolate a poison record",
            ["function"],
            registry=r,
        )
        self.dead_letters = Counter(
            "f2_connector_dead_letters_total",
            "Poison records written to the dead-letter topic",
            ["function", "topic"],
            registry=r,
        )
        self.commits = Counter(
            "f2_connector_commits_total",
            "Offset commits, by result (ok, failed)",
            ["function", "result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "f2_connector_in_flight_batches",
            "Batches being delivered now (at most one per partition)",
            ["function"],
            registry=r,
        )
        self.concurrency = Gauge(
            "f2_connector_concurrency",
            "Partitions the function may be fed at once (replicas x per-replica, capped)",
            ["function"],
            registry=r,
        )
        self.assigned = Gauge(
            "f2_connector_assigned_partitions",
            "Partitions assigned to the function's consumer",
            ["function"],
            registry=r,
        )
        self.functions = Gauge(
            "f2_connector_functions", "Functions fed by this connector", registry=r
        )
        self.listener_races = Counter(
            "f2_connector_rebalance_listener_races_total",
            "Rebalance listeners kafka-python ran while the consumer thread was not waiting in "
            "poll() or close() (0 is the only right value)",
            ["function"],
            registry=r,
        )
        self.discovery_errors = Counter(
            "f2_connector_discovery_errors_total",
            "Failed reads of the gateway's /system/functions",
            registry=r,
        )
