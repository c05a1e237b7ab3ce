"""``python -m infra.services.connector``: feed annotated functions from Kafka until stopped."""

from __future__ import annotations

import logging
import sys
import threading
from functools import partial

from pydantic import SecretStr

from f2lib.kafka import make_producer
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import KafkaDeadLetters
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.service import Connector
from infra.services.connector.worker import kafka_consumer_factory
from infra.services.kit.openfaas import OpenFaaSClient, TimeoutConfig, pooled_session
from infra.services.kit.runner import Service, connect_with_retry, run_service

logger = logging.getLogger("infra.services.connector")

KAFKA_CLIENT_ID = "f2-connector"


def build(
    config: ConnectorConfig, metrics: ConnectorMetrics, password: SecretStr, stop: threading.Event
) -> Service | None:
    """The connector once Kafka answers (None when stopped first)."""
    producer = connect_with_retry(
        lambda: make_producer(config.kafka_bootstrap, client_id=KAFKA_CLIENT_ID),
        stop,
        what=f"kafka {config.kafka_bootstrap}",
        backoff=config.connect_backoff(),
    )
    if producer is None:
        return None
    gateway = OpenFaaSClient(
        config.gateway_url,
        config.gateway_username,
        password,
        timeouts=TimeoutConfig(
            connect_s=config.connect_timeout_s,
            system_s=config.connect_timeout_s * 2,
            invoke_s=config.invoke_timeout_s,
        ),
        session=pooled_session(config.max_concurrency * 2),
    )
    connector = Connector(
        config,
        gateway,
        KafkaDeadLetters(producer, config.dead_letter_topic),
        kafka_consumer_factory(config),
        metrics,
    )
    logger.info("connector on gateway %s, kafka %s", config.gateway_url, config.kafka_bootstrap)
    return Service(
        connector.run, connector.health, closers=(gateway.close, lambda: producer.close(timeout=5))
    )


def main() -> int:
    config = ConnectorConfig()
    metrics = ConnectorMetrics()
    return run_service(
        "connector", config, config.password, partial(build, config, metrics), metrics.registry
    )


if __name__ == "__main__":
    sys.exit(main())
