"""``python -m infra.services.autoscaler``: scale lag-driven functions until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

from f2lib.kafka import kafka_admin_factory
from infra.services.autoscaler.config import AutoscalerConfig
from infra.services.autoscaler.lag import KafkaLagReader
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.autoscaler.service import Autoscaler
from infra.services.kit.openfaas import OpenFaaSClient, TimeoutConfig
from infra.services.kit.ops_http import OpsServer
from infra.services.kit.runner import start_service

logger = logging.getLogger("infra.services.autoscaler")


def main() -> int:
    config = AutoscalerConfig()
    started = start_service(config)
    if started is None:
        return 2
    password, stop = started

    metrics = AutoscalerMetrics()
    gateway = OpenFaaSClient(
        config.gateway_url,
        config.gateway_username,
        password,
        timeouts=TimeoutConfig(connect_s=10.0, system_s=10.0),
    )
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
