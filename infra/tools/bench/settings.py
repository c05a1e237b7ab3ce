"""Input sizes of a run (full or ``--quick``), and the pipeline settings a run records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.config import BridgeConfig
from f2lib.errors import GatewayError
from f2lib.kafka import PRODUCER_DEFAULTS
from infra.deploy.stackfile import StackFile
from infra.local.stack import LocalStack
from infra.services.connector.config import ConnectorConfig
from infra.services.kit.openfaas import TimeoutConfig


@dataclass(frozen=True)
class Sizes:
    """How much each phase sends (messages unless said otherwise)."""

    devices: int
    raw_mqtt: int
    raw_mqtt_c: int
    raw_kafka: int
    copy_messages: int
    decode: int
    baseline: int
    stages: int
    sustained: int
    drain: int
    latency_seconds: float
    burst_before_seconds: float
    burst_seconds: float

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            devices=140,
            raw_mqtt=20_000,
            raw_mqtt_c=50_000,  # below the broker's queue of 100 000 for a slow subscriber
            raw_kafka=50_000,
            copy_messages=50_000,
            decode=20_000,
            baseline=3_000,
            stages=20_000,
            sustained=30_000,
            drain=60_000,
            latency_seconds=30.0,
            burst_before_seconds=10.0,
            burst_seconds=5.0,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            devices=70,
            raw_mqtt=5_000,
            raw_mqtt_c=30_000,
            raw_kafka=15_000,
            copy_messages=15_000,
            decode=5_000,
            baseline=800,
            stages=5_000,
            sustained=8_000,
            drain=15_000,
            latency_seconds=10.0,
            burst_before_seconds=5.0,
            burst_seconds=2.0,
        )


def settings(stack: LocalStack, partitions: int) -> dict[str, Any]:
    """What shapes the figures: batch sizes, linger, concurrency, partitions, replicas."""
    # What the stack's services read: the environment the stack gives them.
    service_env = stack.config.inherited_env
    connector = ConnectorConfig.model_validate(service_env)
    bridge = BridgeConfig.model_validate(service_env)
    stack_file = StackFile.load(stack.root / "stack.yml")
    functions: dict[str, Any] = {}
    for name, spec in stack_file.functions.items():
        env = dict(spec.environment)
        env.update(stack.function_env().get(name, {}))
        functions[name] = {
            "environment": {k: v for k, v in env.items() if "DSN" not in k.upper()},
            "waitress_threads": int(env.get("F2_WAITRESS_THREADS", "4")),
        }
    try:
        with stack.gateway_client(TimeoutConfig(connect_s=10.0, system_s=10.0)) as gateway:
            for function in gateway.functions():
                functions.setdefault(function.name, {})["replicas"] = function.replicas
    except GatewayError:
        pass
    return {
        "partitions": partitions,
        "connector": {
            "batch_max_records": connector.batch_max_records,
            "batch_max_bytes": connector.batch_max_bytes,
            "linger_ms": connector.linger_ms,
            "concurrency_per_replica": connector.concurrency_per_replica,
            "max_concurrency": connector.max_concurrency,
        },
        "kafka_clients": {
            "bridge": bridge.kafka_client,
            "connector": connector.kafka_client,
            **{
                name: spec["environment"].get("KAFKA_CLIENT", "confluent")
                for name, spec in functions.items()
                if name in ("decode", "sink")
            },
        },
        "bridge": {
            "kafka_linger_ms": bridge.kafka_linger_ms,
            "max_in_flight": bridge.max_in_flight,
        },
        "producer_defaults": dict(PRODUCER_DEFAULTS),
        "autoscaler_dry_run": service_env.get("AUTOSCALER_DRY_RUN", "false"),
        "functions": functions,
    }
