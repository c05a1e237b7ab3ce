"""``python -m infra.services.autoscaler``: scale lag-driven functions until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys
import threading
from functools import partial

from pydantic import SecretStr

from f2lib.kafka import kafka_admin_factory
from infra.services.autoscaler.config import AutoscalerConfig
from infra.services.autoscaler.lag import KafkaLagReader
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.autoscaler.service import Autoscaler
from infra.services.kit.openfaas import OpenFaaSClient, TimeoutConfig
from infra.services.kit.runner import Service, run_service

logger = logging.getLogger("infra.services.autoscaler")

KAFKA_CLIENT_ID = "f2-autoscaler"


def build(
    config: AutoscalerConfig, metrics: AutoscalerMetrics, password: SecretStr, stop: threading.Event
) -> Service:
    gateway = OpenFaaSClient(
        config.gateway_url,
        config.gateway_username,
        password,
        timeouts=TimeoutConfig(connect_s=10.0, system_s=10.0),
    )
    lag_reader = KafkaLagReader(kafka_admin_factory(config.kafka_bootstrap, KAFKA_CLIENT_ID))
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
    logger.info("autoscaler on gateway %s, kafka %s", config.gateway_url, config.kafka_bootstrap)
    return Service(autoscaler.run, autoscaler.health, closers=(lag_reader.close, gateway.close))


def main() -> int:
    config = AutoscalerConfig()
    metrics = AutoscalerMetrics()
    return run_service(
        "autoscaler", config, config.password, partial(build, config, metrics), metrics.registry
    )


if __name__ == "__main__":
    sys.exit(main())
