"""Prometheus metrics of the autoscaler, on a registry of its own."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge


class AutoscalerMetrics:
    """What ``/metrics`` serves; per-function series carry the label ``function``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "f2_autoscaler_lag_records",
            "Records not yet committed by the function's consumer group, over all partitions",
            ["function"],
            registry=r,
        )
        self.drain_rate = Gauge(
            "f2_autoscaler_drain_rate_records_per_second",
            "Records per second the lag shrank by over the rate window (negative: it grew)",
            ["function"],
            registry=r,
        )
        self.current = Gauge(
            "f2_autoscaler_current_replicas",
            "Replicas the gateway reported for the function",
            ["function"],
            registry=r,
        )
        self.desired = Gauge(
            "f2_autoscaler_desired_replicas",
            "Replicas the autoscaler decided on (after cool-down)",
            ["function"],
            registry=r,
        )
        self.recommended = Gauge(
            "f2_autoscaler_recommended_replicas",
            "Replicas the lag and drain rate call for (before cool-down)",
            ["function"],
            registry=r,
        )
        self.limit = Gauge(
            "f2_autoscaler_replica_limit",
            "Replica bounds in force, by bound (min, max, partitions)",
            ["function", "bound"],
            registry=r,
        )
        self.lag_target = Gauge(
            "f2_autoscaler_lag_target_records",
            "Lag per replica the function asks for (label f2pipe.lag.target)",
            ["function"],
            registry=r,
        )
        self.decisions = Counter(
            "f2_autoscaler_decisions_total",
            "Scale calls made, by direction (up, down)",
            ["function", "direction"],
            registry=r,
        )
        self.scale_errors = Counter(
            "f2_autoscaler_scale_errors_total",
            "Scale calls the gateway did not accept",
            ["function"],
            registry=r,
        )
        self.cycles = Counter(
            "f2_autoscaler_cycles_total",
            "Evaluation cycles, by result (ok, gateway_error, kafka_error, error)",
            ["result"],
            registry=r,
        )
        self.last_cycle = Gauge(
            "f2_autoscaler_last_cycle_timestamp_seconds",
            "Unix time of the last cycle that read the gateway and Kafka",
            registry=r,
        )
        self.functions = Gauge("f2_autoscaler_functions", "Functions scaled on lag", registry=r)

    def forget(self, function: str) -> None:
        """Drop the series of a function that is no longer deployed."""
        gauges = (self.lag, self.drain_rate, self.current, self.desired, self.recommended)
        for gauge in (*gauges, self.lag_target):
            with contextlib.suppress(KeyError):
                gauge.remove(function)
        for bound in ("min", "max", "partitions"):
            with contextlib.suppress(KeyError):
                self.limit.remove(function, bound)
