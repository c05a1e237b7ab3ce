"""``python -m bridge``: run the MQTT -> Kafka bridge until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.service import MqttKafkaBridge, make_mqtt_client
from f2lib.errors import StreamError
from f2lib.kafka import LazyAdmin, kafka_admin_factory, make_producer
from infra.services.kit.ops_http import OpsServer
from infra.services.kit.runner import connect_with_retry, start_service

logger = logging.getLogger("bridge")


def connect_producer(config: BridgeConfig, stop: threading.Event) -> Any:
    """A producer once Kafka answers (retried with backoff), or None when stopped first."""

    def connect() -> Any:
        producer = make_producer(
            config.kafka_bootstrap,
            linger_ms=config.kafka_linger_ms,
            retries=2**31 - 1,
            delivery_timeout_ms=config.kafka_delivery_timeout_ms,
            client_id=config.client_id,
        )
        producer.partitions_for(config.raw_topic)
        return producer

    return connect_with_retry(
        connect,
        stop,
        what=f"kafka {config.kafka_bootstrap}",
        backoff=config.kafka_connect_backoff(),
    )


class KafkaProbe:
    """Asks the cluster to describe itself (one admin client, made again after a failure)."""

    def __init__(self, bootstrap: str, client_id: str, timeout_ms: int = 5_000) -> None:
        self._admin = LazyAdmin(
            kafka_admin_factory(
                bootstrap, client_id, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
            )
        )

    def __call__(self) -> None:
        try:
            self._admin.get().describe_cluster()
        except Exception:
            self._admin.reset()
            raise

    def close(self) -> None:
        self._admin.reset()


def main() -> int:
    config = BridgeConfig()
    started = start_service(config)
    if started is None:
        return 2
    password, stop = started

    metrics = BridgeMetrics()
    running: list[MqttKafkaBridge] = []

    def health() -> tuple[bool, Mapping[str, Any]]:
        if not running:
            return False, {"starting": True}
        return running[0].health()

    ops = OpsServer(config.http_host, config.http_port, metrics.registry, health).start()
    try:
        producer = connect_producer(config, stop)
        if producer is None:
            return 0
        probe = KafkaProbe(config.kafka_bootstrap, f"{config.client_id}-probe")
        bridge = MqttKafkaBridge(
            config, make_mqtt_client(config, password), producer, metrics, probe=probe
        )
        bridge.mark_kafka_ready()
        running.append(bridge)
        bridge.start()
        stop.wait()
        bridge.stop()
        probe.close()
    except StreamError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        ops.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
