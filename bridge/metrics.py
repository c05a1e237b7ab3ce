"""Prometheus metrics of the bridge, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BridgeMetrics:
    """Counters and gauges the bridge updates; ``registry`` is what ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "f2_bridge_messages_received_total", "MQTT messages handed to the bridge", registry=r
        )
        self.produced = Counter(
            "f2_bridge_records_produced_total",
            "Records Kafka acknowledged, by kind (raw, reply, dead_letter)",
            ["kind"],
            registry=r,
        )
        self.acknowledged = Counter(
            "f2_bridge_messages_acknowledged_total",
            "MQTT messages acknowledged to the broker after Kafka acknowledged their record",
            registry=r,
        )
        self.in_flight = Gauge(
            "f2_bridge_messages_in_flight",
            "Messages received and not yet acknowledged (bounded by BRIDGE_MAX_IN_FLIGHT)",
            registry=r,
        )
        self.reconnects = Counter(
            "f2_bridge_reconnects_total",
            "Connections regained after a loss, by side (mqtt, kafka)",
            ["side"],
            registry=r,
        )
        self.connected = Gauge(
            "f2_bridge_connected", "1 when the side (mqtt, kafka) is usable", ["side"], registry=r
        )
        self.dead_lettered = Counter(
            "f2_bridge_dead_letters_total",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.send_errors = Counter(
            "f2_bridge_kafka_send_errors_total",
            "Kafka sends that failed; the record is held and sent again in order",
            registry=r,
        )
        self.producer_rebuilds = Counter(
            "f2_bridge_producer_rebuilds_total",
            "Kafka producers given up on (a failure, or no answer past the delivery timeout) "
            "and made again",
            registry=r,
        )
        self.duplicates_skipped = Counter(
            "f2_bridge_redeliveries_skipped_total",
            "Broker redeliveries of a message still in flight here (not produced twice)",
            registry=r,
        )
        self.ack_latency = Histogram(
            "f2_bridge_ack_latency_seconds",
            "Time from receiving a message to acknowledging it",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        for side in ("mqtt", "kafka"):
            self.connected.labels(side=side).set(0)
            self.reconnects.labels(side=side)
        for kind in ("raw", "reply", "dead_letter"):
            self.produced.labels(kind=kind)
