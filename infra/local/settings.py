"""The local runtime's settings, read once from the environment where the runtime starts.

``python -m infra.local``, ``python -m infra.local.gateway`` and ``LocalStack`` read a
:class:`RuntimeConfig`; everything below them gets the values it needs as arguments. The
processes the runtime starts get an environment built from it: the variables of
:data:`INHERITED` (the operating system's basics) and the services' own settings (the names
their config classes read), then what the runtime sets for each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.config import BridgeConfig
from f2lib.contracts.records import DEFAULT_RETENTION_DAYS
from infra.services.autoscaler.config import AutoscalerConfig
from infra.services.connector.config import ConnectorConfig

ROOT = Path(__file__).resolve().parents[2]

# What a function replica gets from the runtime's environment (the rest comes from stack.yml).
REPLICA_INHERITED = ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "SSL_CERT_FILE")
# What every other process gets: the replicas' set plus locale, temp folder and proxies.
INHERITED = (
    *REPLICA_INHERITED,
    "LC_CTYPE",
    "TMPDIR",
    "USER",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


def _aliases(config: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for info in config.model_fields.values():
        if info.alias:
            names.add(info.alias)
        if isinstance(info.validation_alias, str):
            names.add(info.validation_alias)
        elif isinstance(info.validation_alias, AliasChoices):
            names.update(str(choice) for choice in info.validation_alias.choices)
    return names


# The environment variables the bridge, connector and autoscaler read, e.g. CONNECTOR_LINGER_MS.
SERVICE_SETTINGS = frozenset(
    _aliases(BridgeConfig) | _aliases(ConnectorConfig) | _aliases(AutoscalerConfig)
)


def inherited_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default: this process's) that the runtime's children get."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in INHERITED or k in SERVICE_SETTINGS}


class PortOverrides(BaseSettings):
    """``F2_PORT_<NAME>``: a fixed port for one part instead of its seed or a free one."""

    model_config = SettingsConfigDict(env_prefix="F2_PORT_", extra="ignore", env_ignore_empty=True)

    mqtt: int | None = None
    mqtt_tls: int | None = None
    mqtt_ws: int | None = None
    kafka: int | None = None
    kafka_controller: int | None = None
    postgres: int | None = None
    gateway: int | None = None
    bridge_http: int | None = None
    connector_http: int | None = None
    autoscaler_http: int | None = None
    prometheus: int | None = None
    kafka_containers: int | None = None
    registry: int | None = None
    kafka_2: int | None = None
    kafka_3: int | None = None
    kafka_controller_2: int | None = None
    kafka_controller_3: int | None = None


class RuntimeConfig(BaseSettings):
    """Environment of the local runtime (names in the aliases; empty values count as unset)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", env_ignore_empty=True)

    state_dir: Path = Field(ROOT / ".state", alias="F2_STATE_DIR")
    build_dir: Path = Field(ROOT / "build", alias="F2_BUILD_DIR")
    certs_dir: Path = Field(ROOT / "certs", alias="F2_CERTS_DIR")
    tools_dir: Path = Field(ROOT / ".tools", alias="F2_TOOLS_DIR")
    sql_dir: Path | None = Field(None, alias="F2_SQL_DIR")
    ports: PortOverrides = Field(default_factory=PortOverrides, alias="F2_PORT_OVERRIDES")
    # Split on spaces; when set it replaces the broker's JVM options (infra/local/launch/kafka.py).
    kafka_jvm_opts_line: str = Field("", alias="F2_KAFKA_JVM_OPTS")
    kafka_heap: str = Field("512m", alias="F2_KAFKA_HEAP")
    kafka_partitions: int = Field(6, alias="F2_KAFKA_PARTITIONS", ge=1)
    # Days raw_iot_data and iot_dead_letter keep records (make redrive, make reprocess).
    retention_days: float = Field(DEFAULT_RETENTION_DAYS, alias="F2_RETENTION_DAYS", gt=0)
    # 1, or 3: a KRaft quorum replicating every partition 3 times, min.insync.replicas=2
    # (infra/local/launch/kafka.py). Three nodes run with process replicas only.
    kafka_brokers: int = Field(1, alias="F2_KAFKA_BROKERS")
    java_home: Path | None = Field(None, alias="JAVA_HOME")
    pg_bin_dir: Path | None = Field(None, alias="F2_PG_BIN")
    mosquitto_bin: Path | None = Field(None, alias="F2_MOSQUITTO_BIN")
    # None: each entry point's own default (the CLI WARNING, the gateway INFO).
    log_level: str | None = Field(None, alias="LOG_LEVEL")
    function_log_level: str = Field("INFO", alias="F2_FUNCTION_LOG_LEVEL")
    pythonpath: str = Field("", alias="PYTHONPATH")
    # Where function replicas run: processes of the build folders, or containers of the images.
    runtime: Literal["processes", "containers"] = Field("processes", alias="F2_RUNTIME")
    docker_host: str | None = Field(None, alias="DOCKER_HOST")
    watchdog_image: str | None = Field(None, alias="WATCHDOG_IMAGE")
    python_image: str | None = Field(None, alias="F2_PYTHON_IMAGE")
    # The watchdog (infra/local/watchdog.py): on by default; how often it looks, and how long
    # a service's /livez may not answer before it is restarted.
    watchdog: bool = Field(True, alias="F2_WATCHDOG")
    watchdog_interval_s: float = Field(2.0, alias="F2_WATCHDOG_INTERVAL_SECONDS", gt=0)
    watchdog_silent_s: float = Field(30.0, alias="F2_WATCHDOG_SILENT_SECONDS", gt=0)
    inherited_env: dict[str, str] = Field(
        default_factory=inherited_environment, alias="F2_INHERITED_ENV"
    )

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("F2_KAFKA_BROKERS is 1, or 3 (a quorum that survives one node)")
        return value

    @property
    def kafka_jvm_opts(self) -> tuple[str, ...] | None:
        """The broker's JVM options when F2_KAFKA_JVM_OPTS replaces them, else None."""
        return tuple(self.kafka_jvm_opts_line.split()) or None

    @property
    def kafka_libs_dir(self) -> Path:
        """Where infra/tools/setup/install-kafka.sh puts the jars: ``<tools>/kafka/libs``."""
        return self.tools_dir / "kafka" / "libs"

    def python_path(self) -> str:
        """PYTHONPATH of the runtime's Python children: the repository, functions/, then ours."""
        parts = [str(ROOT), str(ROOT / "functions")]
        if self.pythonpath:
            parts.append(self.pythonpath)
        return os.pathsep.join(parts)

    def child_env(self, **values: str) -> dict[str, str]:
        """The environment of a process the runtime starts: inherited variables, then ``values``."""
        return {**self.inherited_env, "PYTHONPATH": self.python_path(), **values}

    def replica_env(self) -> dict[str, str]:
        """What a function replica inherits (stack.yml and the gateway add the rest)."""
        return {k: v for k, v in self.inherited_env.items() if k in REPLICA_INHERITED}
