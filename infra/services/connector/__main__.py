"""``python -m infra.services.connector``: feed annotated functions from Kafka until stopped."""

from __future__ import annotations

import logging
import sys

from f2lib.kafka import make_producer
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import KafkaDeadLetters
from infra.services.connector.gateway import GatewayClient
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.service import Connector
from infra.services.connector.worker import kafka_consumer_factory
from infra.services.kit.ops_http import OpsServer
from infra.services.kit.runner import connect_with_retry, start_service

logger = logging.getLogger("infra.services.connector")


def main() -> int:
    config = ConnectorConfig()
    started = start_service(config)
    if started is None:
        return 2
    password, stop = started

    metrics = ConnectorMetrics()
    producer = connect_with_retry(
        lambda: make_producer(config.kafka_bootstrap, client_id="f2-connector"),
        stop,
        what=f"kafka {config.kafka_bootstrap}",
        backoff=config.connect_backoff(),
    )
    if producer is None:
        return 0

    gateway = GatewayClient(
        config.gateway_url,
        config.gateway_username,
        password,
        connect_timeout_s=config.connect_timeout_s,
        invoke_timeout_s=config.invoke_timeout_s,
        pool_size=config.max_concurrency * 2,
    )
    connector = Connector(
        config,
        gateway,
        KafkaDeadLetters(producer, config.dead_letter_topic),
        kafka_consumer_factory(config),
        metrics,
    )
    ops = OpsServer(config.http_host, config.http_port, metrics.registry, connector.health)
    ops.start()
    logger.info("connector on gateway %s, kafka %s", config.gateway_url, config.kafka_bootstrap)
    try:
        connector.run(stop)
    finally:
        ops.stop()
        gateway.close()
        producer.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
