"""The local runtime's settings: environment names, defaults, and what its children inherit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.local.settings import (
    REPLICA_INHERITED,
    ROOT,
    PortOverrides,
    RuntimeConfig,
    inherited_environment,
)
from infra.local.stack import LocalStack, StackPorts

NAMES = (
    "F2_STATE_DIR",
    "F2_BUILD_DIR",
    "F2_CERTS_DIR",
    "F2_TOOLS_DIR",
    "F2_SQL_DIR",
    "F2_KAFKA_JVM_OPTS",
    "F2_KAFKA_HEAP",
    "F2_KAFKA_PARTITIONS",
    "F2_KAFKA_BROKERS",
    "JAVA_HOME",
    "F2_PG_BIN",
    "F2_MOSQUITTO_BIN",
    "LOG_LEVEL",
    "F2_FUNCTION_LOG_LEVEL",
    "PYTHONPATH",
    *(f"F2_PORT_{field.name.upper()}" for field in dataclasses.fields(StackPorts)),
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_runtime_config__defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    config = RuntimeConfig()
    assert config.state_dir == ROOT / ".state"
    assert config.build_dir == ROOT / "build"
    assert config.certs_dir == ROOT / "certs"
    assert config.tools_dir == ROOT / ".tools"
    assert config.kafka_libs_dir == ROOT / ".tools" / "kafka" / "libs"
    assert config.sql_dir is None
    assert (config.kafka_heap, config.kafka_partitions, config.kafka_jvm_opts) == ("512m", 6, None)
    assert (config.java_home, config.pg_bin_dir, config.mosquitto_bin) == (None, None, None)
    assert (config.log_level, config.function_log_level) == (None, "INFO")
    assert config.ports == PortOverrides()
    assert config.python_path().split(":") == [str(ROOT), str(ROOT / "functions")]


def test_runtime_config__reads_the_documented_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "F2_STATE_DIR": tmp_path / "state", "F2_BUILD_DIR": tmp_path / "build",
        "F2_CERTS_DIR": tmp_path / "certs", "F2_TOOLS_DIR": tmp_path / "tools",
        "F2_SQL_DIR": tmp_path / "sql", "F2_KAFKA_JVM_OPTS": "-Xss1m  -XX:+UseZGC",
        "F2_KAFKA_HEAP": "1g", "F2_KAFKA_PARTITIONS": "3", "JAVA_HOME": tmp_path / "jdk",
        "F2_PG_BIN": tmp_path / "pg", "F2_MOSQUITTO_BIN": tmp_path / "mosquitto",
        "LOG_LEVEL": "DEBUG", "F2_FUNCTION_LOG_LEVEL": "WARNING", "PYTHONPATH": "/extra",
        "F2_PORT_GATEWAY": "18080", "F2_PORT_MQTT_TLS": "18883",
    }.items():  # fmt: skip
        clean_env.setenv(name, str(value))
    config = RuntimeConfig()
    assert (config.state_dir, config.build_dir) == (tmp_path / "state", tmp_path / "build")
    assert (config.certs_dir, config.sql_dir) == (tmp_path / "certs", tmp_path / "sql")
    assert config.kafka_libs_dir == tmp_path / "tools" / "kafka" / "libs"
    assert config.kafka_jvm_opts == ("-Xss1m", "-XX:+UseZGC")
    assert (config.kafka_heap, config.kafka_partitions) == ("1g", 3)
    assert config.java_home == tmp_path / "jdk"
    assert (config.pg_bin_dir, config.mosquitto_bin) == (tmp_path / "pg", tmp_path / "mosquitto")
    assert (config.log_level, config.function_log_level) == ("DEBUG", "WARNING")
    assert config.python_path().split(":")[-1] == "/extra"
    assert (config.ports.gateway, config.ports.mqtt_tls, config.ports.mqtt) == (18080, 18883, None)


def test_runtime_config__empty_values_count_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    for name in ("F2_BUILD_DIR", "F2_CERTS_DIR", "F2_KAFKA_JVM_OPTS", "F2_PORT_GATEWAY"):
        clean_env.setenv(name, "")
    config = RuntimeConfig()
    assert (config.build_dir, config.certs_dir) == (ROOT / "build", ROOT / "certs")
    assert config.kafka_jvm_opts is None
    assert config.ports.gateway is None


def test_port_overrides__name_every_stack_port() -> None:
    assert set(PortOverrides.model_fields) == {f.name for f in dataclasses.fields(StackPorts)}


def test_stack_ports_choose__takes_the_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("F2_PORT_GATEWAY", "18080")
    clean_env.setenv("F2_PORT_KAFKA", "19092")
    ports = StackPorts.choose(RuntimeConfig().ports)
    assert (ports.gateway, ports.kafka) == (18080, 19092)
    assert len(set(dataclasses.astuple(ports))) == len(dataclasses.fields(StackPorts))


def test_inherited_environment__keeps_os_basics_and_service_settings_only() -> None:
    env = inherited_environment(
        {
            "PATH": "/usr/bin",
            "LANG": "C.UTF-8",
            "CONNECTOR_LINGER_MS": "20",
            "BRIDGE_MAX_IN_FLIGHT": "64",
            "AUTOSCALER_DRY_RUN": "true",
            "LOG_LEVEL": "DEBUG",
            "GATEWAY_PASSWORD": "from-a-shell",
            "MQTT_PASSWORD": "from-a-shell",
            "PROVISION_TOKEN": "from-a-shell",
            "AWS_SECRET_ACCESS_KEY": "from-a-shell",
            "SOMETHING_ELSE": "x",
        }
    )
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "CONNECTOR_LINGER_MS": "20",
        "BRIDGE_MAX_IN_FLIGHT": "64",
        "AUTOSCALER_DRY_RUN": "true",
        "LOG_LEVEL": "DEBUG",
    }


def test_child_env__inherited_then_pythonpath_then_the_given_values() -> None:
    config = RuntimeConfig(
        PYTHONPATH="/extra",
        inherited_env={"PATH": "/usr/bin", "KAFKA_BOOTSTRAP": "elsewhere:9092"},
    )
    env = config.child_env(KAFKA_BOOTSTRAP="127.0.0.1:19092")
    assert env == {
        "PATH": "/usr/bin",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}:/extra",
        "KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    }


def test_replica_env__only_the_replica_basics() -> None:
    config = RuntimeConfig(
        inherited_env={"PATH": "/usr/bin", "HOME": "/root", "CONNECTOR_LINGER_MS": "20"}
    )
    assert config.replica_env() == {"PATH": "/usr/bin", "HOME": "/root"}
    assert set(config.replica_env()) <= set(REPLICA_INHERITED)


def test_local_stack_load__takes_folders_from_the_config(tmp_path: Path) -> None:
    config = RuntimeConfig(
        F2_STATE_DIR=tmp_path / "state",
        F2_BUILD_DIR=tmp_path / "build",
        F2_CERTS_DIR=tmp_path / "certs",
    )
    stack = LocalStack.load(config=config)
    assert (stack.state_dir, stack.build_dir, stack.certs_dir) == (
        tmp_path / "state",
        tmp_path / "build",
        tmp_path / "certs",
    )
    assert stack.secrets_dir == tmp_path / "state" / "secrets"
    assert stack.config is config


def test_local_stack_function_env__log_level_from_the_config(tmp_path: Path) -> None:
    config = RuntimeConfig(F2_STATE_DIR=tmp_path, F2_FUNCTION_LOG_LEVEL="DEBUG")
    env = LocalStack.load(config=config).function_env()
    assert env["*"]["LOG_LEVEL"] == "DEBUG"
    assert "decode" not in env  # no test-only settings in the product functions' environment


def test_three_brokers__every_address_in_the_bootstrap_and_one_quorum(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("F2_KAFKA_BROKERS", "3")
    stack = LocalStack(tmp_path, ports=StackPorts.free(), config=RuntimeConfig())
    assert stack.kafka_bootstrap == ",".join(f"127.0.0.1:{p}" for p in stack.kafka_ports)
    assert len(set(stack.kafka_ports)) == 3
    kafka = stack.kafka()
    assert [node.node_id for node in kafka.nodes] == [1, 2, 3]
    assert {node.replication for node in kafka.nodes} == {3}
    assert {node.min_insync for node in kafka.nodes} == {2}
    voters = kafka.nodes[0].voters().split(",")
    assert [v.split("@")[0] for v in voters] == ["1", "2", "3"]
    assert [n.state_dir.name for n in kafka.nodes] == ["kafka", "node-2", "node-3"]
    assert stack.function_env()["*"]["KAFKA_BOOTSTRAP"] == stack.kafka_bootstrap
    assert [stack.kafka_part(n) for n in (1, 2, 3)] == ["kafka", "kafka-2", "kafka-3"]


@pytest.mark.parametrize("brokers", ["2", "4", "0"])
def test_kafka_brokers__other_than_one_or_three_is_refused(
    brokers: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("F2_KAFKA_BROKERS", brokers)
    with pytest.raises(ValueError, match="1, or 3"):
        RuntimeConfig()
