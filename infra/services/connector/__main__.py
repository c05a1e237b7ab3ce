"""``python -m infra.services.connector``: feed annotated functions from Kafka until stopped.

Gateway mode (the default): the functions from ``GATEWAY_URL``'s ``/system/functions``, invoked
through the gateway with its basic-auth password. Direct mode (``CONNECTOR_FUNCTIONS_FILE``
set): the functions from that static list, each invoked at its own URL, no gateway at all.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from functools import partial

from pydantic import SecretStr

from f2lib.kafka import make_producer
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import KafkaDeadLetters
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.service import Connector, FunctionGateway
from infra.services.connector.static import StaticFunctionGateway
from infra.services.connector.worker import kafka_consumer_factory
from infra.services.kit.openfaas import OpenFaaSClient, TimeoutConfig, pooled_session
from infra.services.kit.runner import Service, connect_with_retry, run_service

logger = logging.getLogger("infra.services.connector")

KAFKA_CLIENT_ID = "f2-connector"


def function_gateway(
    config: ConnectorConfig, password: SecretStr | None
) -> tuple[FunctionGateway, Callable[[], None], str]:
    """Where the functions are found and invoked: (gateway, its closer, what to log)."""
    timeouts = TimeoutConfig(
        connect_s=config.connect_timeout_s,
        system_s=config.connect_timeout_s * 2,
        invoke_s=config.invoke_timeout_s,
    )
    session = pooled_session(config.max_concurrency * 2)
    if config.functions_file is not None:
        static = StaticFunctionGateway(config.functions_file, timeouts=timeouts, session=session)
        return static, static.close, f"function list {config.functions_file} (direct mode)"
    client = OpenFaaSClient(
        config.gateway_url, config.gateway_username, password, timeouts=timeouts, session=session
    )
    return client, client.close, f"gateway {config.gateway_url}"


def build(
    config: ConnectorConfig,
    metrics: ConnectorMetrics,
    password: SecretStr | None,
    stop: threading.Event,
) -> Service | None:
    """The connector once Kafka answers (None when stopped first)."""
    producer = connect_with_retry(
        lambda: make_producer(
            config.kafka_bootstrap, client=config.kafka_client, client_id=KAFKA_CLIENT_ID
        ),
        stop,
        what=f"kafka {config.kafka_bootstrap}",
        backoff=config.connect_backoff(),
    )
    if producer is None:
        return None
    gateway, close_gateway, where = function_gateway(config, password)
    connector = Connector(
        config,
        gateway,
        KafkaDeadLetters(producer, config.dead_letter_topic),
        kafka_consumer_factory(config),
        metrics,
    )
    logger.info("connector on %s, kafka %s", where, config.kafka_bootstrap)
    return Service(
        connector.run, connector.health, closers=(close_gateway, lambda: producer.close(timeout=5))
    )


def main() -> int:
    config = ConnectorConfig()
    metrics = ConnectorMetrics()
    return run_service(
        "connector", config, config.credentials, partial(build, config, metrics), metrics.registry
    )


if __name__ == "__main__":
    sys.exit(main())
