"""``python -m bridge``: run the MQTT -> Kafka bridge until SIGTERM or SIGINT."""

from __future__ import annotations

import sys
import threading
from functools import partial
from typing import Any

from pydantic import SecretStr

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.service import MqttKafkaBridge, make_mqtt_client
from f2lib.kafka import LazyAdmin, close_producer, kafka_admin_factory, make_producer
from infra.services.kit.runner import Service, connect_with_retry, run_service

# A producer is made while Kafka may be away (a rebuild): its bootstrap gives up sooner than
# kafka-python's 30 s, so that the attempts follow the rebuild backoff.
BOOTSTRAP_TIMEOUT_MS = 5_000


def new_producer(config: BridgeConfig) -> Any:
    """One attempt at a producer for the bridge; raises when Kafka does not answer."""
    producer = make_producer(
        config.kafka_bootstrap,
        client=config.kafka_client,
        linger_ms=config.kafka_linger_ms,
        retries=2**31 - 1,
        delivery_timeout_ms=config.kafka_delivery_timeout_ms,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        client_id=config.client_id,
    )
    try:
        producer.partitions_for(config.raw_topic)
    except Exception:
        close_producer(producer, timeout=0)
        raise
    return producer


def connect_producer(config: BridgeConfig, stop: threading.Event) -> Any:
    """A producer once Kafka answers (retried with backoff), or None when stopped first."""
    return connect_with_retry(
        partial(new_producer, config),
        stop,
        what=f"kafka {config.kafka_bootstrap}",
        backoff=config.kafka_connect_backoff(),
    )


class KafkaProbe:
    """Asks the cluster to describe itself (one admin client, made again after a failure)."""

    def __init__(self, bootstrap: str, client_id: str, timeout_ms: int = 5_000) -> None:
        self._lock = threading.Lock()  # the idle prober and the sender both ask
        self._admin = LazyAdmin(
            kafka_admin_factory(
                bootstrap, client_id, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
            )
        )

    def __call__(self) -> None:
        with self._lock:
            try:
                self._admin.get().describe_cluster()
            except Exception:
                self._admin.reset()
                raise

    def close(self) -> None:
        with self._lock:
            self._admin.reset()


def build(
    config: BridgeConfig, metrics: BridgeMetrics, password: SecretStr, stop: threading.Event
) -> Service | None:
    """The bridge once Kafka answers (None if stopped first); runs until ``stop``, then drains."""
    producer = connect_producer(config, stop)
    if producer is None:
        return None
    probe = KafkaProbe(config.kafka_bootstrap, f"{config.client_id}-probe")
    bridge = MqttKafkaBridge(
        config,
        make_mqtt_client(config, password),
        producer,
        metrics,
        probe=probe,
        rebuild=partial(new_producer, config),
    )
    bridge.mark_kafka_ready()

    def run(stop: threading.Event) -> None:
        bridge.start()
        stop.wait()
        bridge.stop()

    return Service(run, bridge.health, closers=(probe.close,))


def main() -> int:
    config = BridgeConfig()
    metrics = BridgeMetrics()
    return run_service(
        "bridge", config, config.password, partial(build, config, metrics), metrics.registry
    )


if __name__ == "__main__":
    sys.exit(main())
