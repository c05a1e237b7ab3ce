"""``python -m infra.connector``: feed annotated functions from Kafka until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from f2lib.errors import ConfigError, StreamError
from f2lib.kafka import make_producer
from f2lib.ops_http import OpsServer
from f2lib.secrets import SecretStore
from infra.connector.config import ConnectorConfig
from infra.connector.delivery import KafkaDeadLetters
from infra.connector.gateway import GatewayClient
from infra.connector.metrics import ConnectorMetrics
from infra.connector.service import Connector
from infra.connector.worker import kafka_consumer_factory

logger = logging.getLogger("infra.connector")


def main() -> int:
    config = ConnectorConfig()
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s",
    )
    try:
        password = config.password(SecretStore())
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    metrics = ConnectorMetrics()
    producer = None
    delay = 1.0
    while producer is None:
        try:
            producer = make_producer(config.kafka_bootstrap, client_id="f2-connector")
        except StreamError as exc:
            logger.warning("%s; retry in %.0fs", exc, delay)
            if stop.wait(delay):
                return 0
            delay = min(delay * 2, config.retry_max_s)

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
