"""``python -m bridge``: run the MQTT -> Kafka bridge until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.service import MqttKafkaBridge, make_mqtt_client
from f2lib.errors import StreamError
from f2lib.kafka import make_producer
from f2lib.ops_http import OpsServer
from f2lib.service import connect_with_retry, start_service

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
        connect, stop, what=f"kafka {config.kafka_bootstrap}", max_delay_s=config.retry_max_s
    )


class KafkaProbe:
    """Asks the cluster to describe itself (one admin client, made again after a failure)."""

    def __init__(self, bootstrap: str, client_id: str, timeout_ms: int = 5_000) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._timeout_ms = timeout_ms
        self._admin: Any = None

    def __call__(self) -> None:
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._bootstrap.split(","),
                    client_id=self._client_id,
                    request_timeout_ms=self._timeout_ms,
                    bootstrap_timeout_ms=self._timeout_ms,
                )
            self._admin.describe_cluster()
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


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
