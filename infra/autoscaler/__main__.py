"""``python -m infra.autoscaler``: scale lag-driven functions until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

from f2lib.kafka import kafka_admin_factory
from f2lib.ops_http import OpsServer
from f2lib.service import start_service
from infra.autoscaler.config import AutoscalerConfig
from infra.autoscaler.gateway import GatewayClient
from infra.autoscaler.lag import KafkaLagReader
from infra.autoscaler.metrics import AutoscalerMetrics
from infra.autoscaler.service import Autoscaler

logger = logging.getLogger("infra.autoscaler")


def main() -> int:
    config = AutoscalerConfig()
    started = start_service(config)
    if started is None:
        return 2
    password, stop = started

    metrics = AutoscalerMetrics()
    gateway = GatewayClient(config.gateway_url, config.gateway_username, password)
    lag_reader = KafkaLagReader(kafka_admin_factory(config.kafka_bootstrap, "f2-autoscaler"))
    autoscaler = Autoscaler(
        gateway,
        lag_reader,
        metrics,
        config.policy(),
        interval_s=config.interval_s,
        group_prefix=config.group_prefix,
        replica_cap=config.replica_cap,
        dry_run=config.dry_run,
    )
    ops = OpsServer(config.http_host, config.http_port, metrics.registry, autoscaler.health)
    ops.start()
    logger.info("autoscaler on gateway %s, kafka %s", config.gateway_url, config.kafka_bootstrap)
    try:
        autoscaler.run(stop)
    finally:
        ops.stop()
        lag_reader.close()
        gateway.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
