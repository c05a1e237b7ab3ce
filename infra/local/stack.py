"""The local stack: start, check, describe and stop every part of f2pipe on this machine.

State lives in ``$F2_STATE_DIR`` (default ``.state/``): ports chosen on the first ``up``,
secrets (0600 files, mounted per function by the gateway), each part's data, logs and pid.
Services run detached, so they outlive ``make up``; ``make down`` stops them by pid file.
Settings come from one :class:`~infra.local.settings.RuntimeConfig`; each service reads its
secrets from the state's ``secrets/`` folder (``F2_SECRETS_DIR``), never from its environment.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import requests
from pydantic import SecretStr

from certs.cli import init as certs_init
from certs.cli import sync as certs_sync
from f2lib.contracts.records import PIPELINE_TOPICS, topic_configs
from f2lib.errors import MonitoringError, ProcessError
from infra.deploy.mosquitto.config import BRIDGE_TOPICS, COMMAND_TOPICS, MONITOR_TOPICS, TlsFiles
from infra.deploy.stackfile import StackFile
from infra.local import downlink
from infra.local.buildctx import build_all
from infra.local.images import BuiltImage, Docker, ImageBuilder, ImageConfig
from infra.local.launch.docker import DockerEngine
from infra.local.launch.kafka import KafkaCluster
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.launch.postgres import PostgresServer
from infra.local.launch.prometheus import (
    PROMETHEUS_BIN,
    PrometheusServer,
    ScrapePorts,
    summarize_targets,
)
from infra.local.launch.registry import LocalRegistry
from infra.local.ports import free_port, port_open, preferred_port
from infra.local.process import ManagedProcess, pid_alive, stop_pidfile
from infra.local.settings import ROOT, PortOverrides, RuntimeConfig
from infra.local.watchdog import PartRecipe, restarts, write_recipe
from infra.services.autoscaler.health import summarize as autoscaler_summary
from infra.services.kit.openfaas import FunctionStatus, OpenFaaSClient, TimeoutConfig
from provision.publishers import LOCK_FILE
from provision.registry import ACL_FILE, CA_FILE, CRL_FILE, ISSUED_DIR, REGISTRY_FILE

logger = logging.getLogger(__name__)

DEVICES_DB = "VT_DeviceManagement"
TIMESERIES_DB = "timeseries"
MONITOR_USER = "f2-monitor"
CONNECTOR_INSTANCE = "f2-connector-local-0"
PROBE_TIMEOUTS = TimeoutConfig(connect_s=3.0, system_s=3.0)
# Stop order: the watchdog first (it would start the others again), then consumers of a
# service before the service.
PARTS = (
    "watchdog",
    "prometheus",
    "autoscaler",
    "connector",
    "bridge",
    "gateway",
    "reloader",
    "registry",
    "mosquitto",
    "kafka",
    "kafka-2",
    "kafka-3",
    "postgres",
)
# The container backend's view: where the registry lives in the provisioning function.
CONTAINER_REGISTRY_DIR = "/var/lib/f2pipe/registry"


def describe_runtime(function: FunctionStatus) -> str:
    """``f2pipe/decode:0.1.0, containers, under of-watchdog``: how a function runs here."""
    backend = function.runtime.get("backend", "?")
    watchdog = "under of-watchdog" if function.runtime.get("watchdog") else "without of-watchdog"
    return f"{function.image}, {backend}, {watchdog}"


def timeseries_variant(cursor: Any) -> str:
    """What the timeseries database runs, read from it: ``TimescaleDB <version>`` when the
    extension is created there, else ``plain PostgreSQL fallback``."""
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = cursor.fetchone()
    return f"TimescaleDB {row[0]}" if row else "plain PostgreSQL fallback"


@dataclass
class StackPorts:
    """Loopback ports of the local stack: the seeds' ports where free, others otherwise."""

    mqtt: int = 1883
    mqtt_tls: int = 8883
    mqtt_ws: int = 9001
    kafka: int = 9092
    kafka_controller: int = 9093
    postgres: int = 5432
    gateway: int = 8080
    bridge_http: int = 9102
    connector_http: int = 9103
    autoscaler_http: int = 9104
    prometheus: int = 9090
    kafka_containers: int = 9094
    registry: int = 5000
    # the second and third node of a three-broker Kafka (F2_KAFKA_BROKERS=3)
    kafka_2: int = 9095
    kafka_3: int = 9096
    kafka_controller_2: int = 9097
    kafka_controller_3: int = 9098

    @classmethod
    def choose(cls, overrides: PortOverrides | None = None) -> StackPorts:
        """``overrides`` (``F2_PORT_<NAME>``) where given, else the seed when free."""
        chosen: dict[str, int] = {}
        for name, default in asdict(cls()).items():
            override = getattr(overrides, name) if overrides is not None else None
            port = override or preferred_port(default)
            while port in chosen.values():
                port = preferred_port(0)
            chosen[name] = port
        return cls(**chosen)

    @classmethod
    def free(cls) -> StackPorts:
        """Any free ports: for tests, so they never collide with a running ``make up``."""
        chosen: list[int] = []
        for _ in asdict(cls()):
            port = free_port()
            while port in chosen:
                port = free_port()
            chosen.append(port)
        return cls(*chosen)


@dataclass
class LocalStack:
    """Paths and settings of one local stack.

    ``config`` (read from the environment when not given) holds everything else the stack
    passes down: port overrides, Kafka options, binaries, log levels, inherited variables.
    """

    state_dir: Path
    root: Path = ROOT
    ports: StackPorts = field(default_factory=StackPorts)
    build_dir: Path = ROOT / "build"
    certs_dir: Path = ROOT / "certs"
    config: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def load(
        cls, state_dir: Path | None = None, *, config: RuntimeConfig | None = None
    ) -> LocalStack:
        """The stack of ``config`` (default: read from the environment) in ``state_dir``
        (default: the config's), with the ports an earlier ``up`` chose."""
        config = config or RuntimeConfig()
        state = (state_dir or config.state_dir).resolve()
        stack = cls(
            state_dir=state,
            build_dir=config.build_dir.resolve(),
            certs_dir=config.certs_dir.resolve(),
            config=config,
        )
        ports_file = state / "ports.json"
        if ports_file.exists():
            saved = json.loads(ports_file.read_text())
            known = {k: v for k, v in saved.items() if k in StackPorts.__dataclass_fields__}
            stack.ports = StackPorts(**known)
        return stack

    # --- paths ----------------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def containers(self) -> bool:
        """Function replicas run as containers of their images (F2_RUNTIME=containers)."""
        return self.config.runtime == "containers"

    def docker_engine(self) -> DockerEngine:
        return DockerEngine(self.state_dir / "docker", self.config.docker_host)

    def container_view(self) -> dict[str, str]:
        """``docker_host`` and ``service_host`` chosen by ``up`` in containers mode."""
        path = self.state_dir / "containers.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    @property
    def service_host(self) -> str:
        """Where function replicas reach the services: loopback, or the Docker bridge address."""
        return self.container_view().get("service_host", "127.0.0.1")

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def pid_path(self, part: str) -> Path:
        return self.state_dir / "pids" / f"{part}.pid"

    def log_path(self, part: str) -> Path:
        return {
            "postgres": self.state_dir / "postgres" / "postgres.log",
            "kafka": self.state_dir / "kafka" / "kafka.log",
            "kafka-2": self.state_dir / "kafka" / "node-2" / "kafka.log",
            "kafka-3": self.state_dir / "kafka" / "node-3" / "kafka.log",
            "mosquitto": self.state_dir / "mosquitto" / "mosquitto.log",
            "prometheus": self.state_dir / "prometheus" / "prometheus.log",
        }.get(part, self.logs_dir / f"{part}.log")

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def _ensure_secret(self, name: str, make: Callable[[], str]) -> str:
        if not (self.secrets_dir / name).exists():
            self._write_secret(name, make())
        return self.secret(name)

    @property
    def host_secrets_dir(self) -> Path:
        """Secrets as processes on this host use them, where they differ from the functions'
        (the DSNs, when functions run in containers and reach PostgreSQL on the bridge)."""
        return self.state_dir / "host-secrets"

    def _write_secret(self, name: str, value: str, folder: Path | None = None) -> None:
        """Write a secret file 0600 (created with that mode, never widened) in a 0700 folder."""
        folder = folder or self.secrets_dir
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        path = folder / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")

    # --- parts ----------------------------------------------------------------------------
    def postgres(self) -> PostgresServer:
        view = self.container_view()
        host = view.get("service_host")
        return PostgresServer(
            self.state_dir / "postgres",
            self.ports.postgres,
            bin_dir=self.config.pg_bin_dir,
            listen=("127.0.0.1", host) if host else ("127.0.0.1",),
            client_networks=(view["service_network"],) if host else (),
        )

    @property
    def kafka_ports(self) -> list[int]:
        """The client port of each Kafka node (one, or three: F2_KAFKA_BROKERS)."""
        ports = [self.ports.kafka, self.ports.kafka_2, self.ports.kafka_3]
        return ports[: self.config.kafka_brokers]

    @property
    def kafka_bootstrap(self) -> str:
        """Every Kafka node's address, as the services and functions connect."""
        return ",".join(f"127.0.0.1:{port}" for port in self.kafka_ports)

    @staticmethod
    def kafka_part(node: int) -> str:
        """The part (pid file, log, watchdog recipe) of Kafka node ``node``: kafka, kafka-2..."""
        return "kafka" if node == 1 else f"kafka-{node}"

    def kafka(self) -> KafkaCluster:
        controllers = [
            self.ports.kafka_controller,
            self.ports.kafka_controller_2,
            self.ports.kafka_controller_3,
        ]
        return KafkaCluster(
            self.state_dir / "kafka",
            self.kafka_ports,
            controllers[: self.config.kafka_brokers],
            partitions=self.config.kafka_partitions,
            libs_dir=self.config.kafka_libs_dir,
            heap=self.config.kafka_heap,
            jvm_opts=self.config.kafka_jvm_opts,
            java_home=self.config.java_home,
            container_listener=(
                (self.service_host, self.ports.kafka_containers) if self.container_view() else None
            ),
        )

    def mosquitto(self) -> MosquittoServer:
        server = MosquittoServer(
            self.state_dir / "mosquitto",
            self.ports.mqtt,
            pid_path=self.pid_path("mosquitto"),
            tls_port=self.ports.mqtt_tls,
            ws_port=self.ports.mqtt_ws,
            tls=TlsFiles.from_dir(self.certs_dir),
            username=MONITOR_USER,
            password=self.secret("mqtt-monitor-password"),
            binary=self.config.mosquitto_bin,
            topics=MONITOR_TOPICS,
            internal_hosts=(self.service_host,) if self.container_view() else (),
        )
        server.add_user(
            self.secret("mqtt-bridge-username"), self.secret("mqtt-bridge-password"), BRIDGE_TOPICS
        )
        # Downlink commands: the command sender is the one user that may write ctrl/#.
        server.add_user(
            downlink.COMMAND_MQTT_USER,
            self.secret(downlink.COMMAND_PASSWORD_SECRET),
            COMMAND_TOPICS,
        )
        return server

    def dsn(self, dbname: str) -> str:
        return self.postgres().dsn(dbname)

    def function_dsn(self, dbname: str) -> str:
        """The DSN as the functions use it (their secrets): the service host's address."""
        return self.dsn(dbname).replace("host=127.0.0.1 ", f"host={self.service_host} ", 1)

    def credentials(self) -> None:
        """The CA, broker certificate and service credentials (``python -m certs init``), copied
        into the stack's secrets folder under the names the functions and services read."""
        certs_init(self.certs_dir, ["127.0.0.1", "localhost"])
        issued = self.certs_dir / "secrets"
        for source, name in (
            ("ca-key", "ca-key"),
            ("ca-crt", "ca-crt"),
            ("provision-token", "provision-token"),
            ("basic-auth-user", "basic-auth-user"),
            ("basic-auth-password", "basic-auth-password"),
            ("mqtt-username", "mqtt-bridge-username"),
            ("mqtt-password", "mqtt-bridge-password"),
        ):
            value = (issued / source).read_text().strip()
            if not (self.secrets_dir / name).exists() or self.secret(name) != value:
                self._write_secret(name, value)
        self._ensure_secret("mqtt-monitor-password", lambda: secrets.token_urlsafe(24))
        # Downlink commands: the callers' tokens and the command sender's broker password.
        self._ensure_secret(downlink.COMMAND_TOKEN_SECRET, downlink.new_command_token)
        self._ensure_secret(downlink.COMMAND_PASSWORD_SECRET, downlink.new_password)

    def function_env(self) -> dict[str, dict[str, str]]:
        """Environment the gateway gives the functions here, over stack.yml's values."""
        if self.containers:
            return {
                "*": {
                    "KAFKA_BOOTSTRAP": f"kafka:{self.ports.kafka_containers}",
                    "LOG_LEVEL": self.config.function_log_level,
                },
                "provision": {
                    "REGISTRY_PUBLISHER": "filesystem",
                    "REGISTRY_DIR": CONTAINER_REGISTRY_DIR,
                },
                "command": downlink.command_function_env(self.ports.mqtt, "mosquitto"),
            }
        return {
            "*": {
                "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "LOG_LEVEL": self.config.function_log_level,
            },
            "provision": {
                "REGISTRY_PUBLISHER": "filesystem",
                "REGISTRY_DIR": str(self.certs_dir),
                "MOSQUITTO_PID_FILE": str(self.pid_path("mosquitto")),
            },
            "command": downlink.command_function_env(self.ports.mqtt),
        }

    def env(self) -> dict[str, str]:
        """Endpoints and credentials a user or script needs (``make -s env``)."""
        values = {
            "GATEWAY_URL": f"http://127.0.0.1:{self.ports.gateway}",
            "GATEWAY_USERNAME": self.secret("basic-auth-user"),
            "GATEWAY_PASSWORD": self.secret("basic-auth-password"),
            "OPENFAAS_URL": f"http://127.0.0.1:{self.ports.gateway}",
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(self.ports.mqtt),
            "MQTT_TLS_PORT": str(self.ports.mqtt_tls),
            "MQTT_WS_PORT": str(self.ports.mqtt_ws),
            "MQTT_USERNAME": MONITOR_USER,
            "MQTT_PASSWORD": self.secret("mqtt-monitor-password"),
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DEVICES_DSN": self.dsn(DEVICES_DB),
            "TIMESERIES_DSN": self.dsn(TIMESERIES_DB),
            "CA_CERT": str(self.certs_dir / "ca.crt"),
            "PROVISION_TOKEN": self.secret("provision-token"),
            "COMMAND_TOKEN": downlink.operator_token(self.secret(downlink.COMMAND_TOKEN_SECRET)),
            "F2_STATE_DIR": str(self.state_dir),
            "F2_SECRETS_DIR": str(self.secrets_dir),
            "AUTOSCALER_URL": f"http://127.0.0.1:{self.ports.autoscaler_http}",
            "PROMETHEUS_URL": f"http://127.0.0.1:{self.ports.prometheus}",
        }
        return values

    # --- lifecycle ------------------------------------------------------------------------
    def up(self) -> None:
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        ports_file = self.state_dir / "ports.json"
        if not ports_file.exists():
            if self.ports == StackPorts():
                self.ports = StackPorts.choose(self.config.ports)
            ports_file.write_text(json.dumps(asdict(self.ports), indent=2) + "\n")
        self.logs_dir.mkdir(exist_ok=True)
        self.credentials()
        if self.containers:
            self._start_docker()

        if not self._running("postgres"):
            print(f"starting postgres on 127.0.0.1:{self.ports.postgres}", flush=True)
            pg = self.postgres().start(pid_path=self.pid_path("postgres"))
            self._record(pg.process, stop_signal=signal.SIGINT)
            for db in (DEVICES_DB, TIMESERIES_DB):
                pg.create_database(db)
        for name, db in (("devices-dsn", DEVICES_DB), ("timeseries-dsn", TIMESERIES_DB)):
            self._write_secret(name, self.function_dsn(db))
            self._write_secret(name, self.dsn(db), self.host_secrets_dir)
        self._apply_schema()
        # The ACL and CRL follow the registry (a registry kept from an earlier run included).
        certs_sync(self.certs_dir, self.dsn(DEVICES_DB), None)
        self._give_registry_to_provision()

        if not self._running("kafka"):
            print(f"starting kafka on {self.kafka_bootstrap}", flush=True)
            nodes = range(1, self.config.kafka_brokers + 1)
            kafka = self.kafka().start(pid_paths=[self.pid_path(self.kafka_part(n)) for n in nodes])
            for node, process in zip(nodes, kafka.processes(), strict=True):
                self._record(process, name=self.kafka_part(node))  # a recipe per node
            kafka.create_topics(
                PIPELINE_TOPICS,
                self.config.kafka_partitions,
                topic_configs(self.config.retention_days),
            )

        if not self._running("mosquitto"):
            print(f"starting mosquitto on 127.0.0.1:{self.ports.mqtt}", flush=True)
            self._record(self.mosquitto().start().process)

        if self.containers and not self._running("registry"):
            print(f"starting registry on 127.0.0.1:{self.ports.registry}", flush=True)
            self.registry().start()
        if self.containers and not self._running("reloader"):
            self._start_reloader()
        if not self._running("gateway"):
            self._start_gateway()

        if not self._running("bridge"):
            self._spawn(
                "bridge",
                [sys.executable, "-m", "bridge"],
                self._bridge_env(),
                ready_url=f"http://127.0.0.1:{self.ports.bridge_http}/healthz",
                live_url=f"http://127.0.0.1:{self.ports.bridge_http}/livez",
            )
        if not self._running("connector"):
            self._spawn(
                "connector",
                [sys.executable, "-m", "infra.services.connector"],
                self._gateway_client_env(
                    "CONNECTOR",
                    self.ports.connector_http,
                    # one connector here: restarted, it takes its own place in each group
                    CONNECTOR_INSTANCE_ID=CONNECTOR_INSTANCE,
                ),
                ready_url=f"http://127.0.0.1:{self.ports.connector_http}/healthz",
                live_url=f"http://127.0.0.1:{self.ports.connector_http}/livez",
            )
        if not self._running("autoscaler"):
            self._spawn(
                "autoscaler",
                [sys.executable, "-m", "infra.services.autoscaler"],
                self._gateway_client_env("AUTOSCALER", self.ports.autoscaler_http),
                ready_url=f"http://127.0.0.1:{self.ports.autoscaler_http}/healthz",
                live_url=f"http://127.0.0.1:{self.ports.autoscaler_http}/livez",
            )
        if not self._running("prometheus") and shutil.which(PROMETHEUS_BIN):
            print(f"starting prometheus on 127.0.0.1:{self.ports.prometheus}", flush=True)
            self._record(self.prometheus().start(pid_path=self.pid_path("prometheus")).process)
            self._wait_for_targets()
        if self.config.watchdog and not self._running("watchdog"):
            self._start_watchdog()
        print(f"stack up in {time.monotonic() - started:.1f}s (state: {self.state_dir})")

    def _wait_for_targets(self, timeout: float = 45.0) -> None:
        """Wait until Prometheus has discovered its targets and scraped each once."""
        url = f"http://127.0.0.1:{self.ports.prometheus}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if "not scraped yet" not in summarize_targets(url):
                    return
            except MonitoringError:
                pass
            time.sleep(1.0)
        logger.warning("Prometheus has not scraped every target after %.0fs", timeout)

    def _apply_schema(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "infra.deploy.schema",
            "--devices-dsn-file",
            str(self.host_secrets_dir / "devices-dsn"),
            "--timeseries-dsn-file",
            str(self.host_secrets_dir / "timeseries-dsn"),
        ]
        if self.config.sql_dir is not None:
            argv += ["--sql-dir", str(self.config.sql_dir)]
        result = subprocess.run(
            argv,
            env=self.config.child_env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProcessError(f"schema apply failed:\n{result.stderr[-2000:]}")
        for line in (result.stdout + result.stderr).splitlines()[-3:]:
            print(f"schema: {line}")

    def _start_docker(self) -> None:
        """The Docker engine (ours or the user's) and the addresses containers use."""
        engine = self.docker_engine()
        host = engine.start()
        whose = "ours" if engine.owned else "the user's"
        print(f"docker engine {host} ({whose})", flush=True)
        gateway, network = engine.bridge_network()
        (self.state_dir / "containers.json").write_text(
            json.dumps(
                {
                    "docker_host": host,
                    "service_host": gateway,
                    "service_network": network,
                    "owned": engine.owned,
                },
                indent=2,
            )
        )

    def registry(self) -> LocalRegistry:
        return LocalRegistry(
            self.state_dir / "registry", self.ports.registry, pid_path=self.pid_path("registry")
        )

    def _start_reloader(self) -> None:
        """Mosquitto reloads when the provisioning container rewrites the ACL or CRL."""
        files = TlsFiles.from_dir(self.certs_dir)
        argv = [
            sys.executable,
            "-m",
            "infra.local.reloader",
            "--pid-file",
            str(self.pid_path("mosquitto")),
            "--watch",
            str(files.acl),
            "--watch",
            str(files.crl),
        ]
        print("starting reloader (mosquitto follows the registry)", flush=True)
        reloader = ManagedProcess(
            "reloader",
            argv,
            self.log_path("reloader"),
            env=self.config.child_env(),
            cwd=self.root,
            pid_path=self.pid_path("reloader"),
        ).start()
        self._record(reloader)

    def _start_watchdog(self) -> None:
        """The part that starts again any part that died, or a service that stays unhealthy."""
        print("starting watchdog (restarts dead and stuck parts)", flush=True)
        ManagedProcess(
            "watchdog",
            [sys.executable, "-m", "infra.local.watchdog", "--state-dir", str(self.state_dir)],
            self.log_path("watchdog"),
            env=self.config.child_env(
                F2_WATCHDOG_INTERVAL_SECONDS=str(self.config.watchdog_interval_s),
                F2_WATCHDOG_SILENT_SECONDS=str(self.config.watchdog_silent_s),
            ),
            cwd=self.root,
            pid_path=self.pid_path("watchdog"),
        ).start()

    def _record(
        self,
        process: ManagedProcess | None,
        live_url: str | None = None,
        stop_signal: int | None = None,
        name: str | None = None,
    ) -> None:
        """Remember how ``process`` was started, for the watchdog to start it again."""
        if process is not None:
            write_recipe(self.state_dir, PartRecipe.of(process, live_url, stop_signal, name))

    def build_images(self) -> list[BuiltImage]:
        """The function images of stack.yml, built from their build contexts."""
        view = self.container_view()
        docker = Docker(view["docker_host"], self.config.child_env())
        builder = ImageBuilder(
            docker, ImageConfig.from_runtime(self.config), self.state_dir / "images"
        )
        return builder.build_stack(StackFile.load(self.root / "stack.yml"), self.build_dir)

    def _container_args(self) -> list[str]:
        view = self.container_view()
        built = self.build_images()
        for image in built:
            print(f"image {image.tag} ({image.runs})", flush=True)
        provision = next((b.tag for b in built if b.function == "provision"), None)
        args = [
            "--backend",
            "containers",
            "--docker-host",
            view["docker_host"],
            "--service-host",
            view["service_host"],
        ]
        if provision is not None:
            uid, gid = Docker(view["docker_host"], self.config.child_env()).user_of(provision)
            view["registry_owner"] = f"{uid}:{gid}"
            (self.state_dir / "containers.json").write_text(json.dumps(view, indent=2))
            self._give_registry_to_provision()
            args += ["--mount", f"provision={self.certs_dir}:{CONTAINER_REGISTRY_DIR}"]
        return args

    def _give_registry_to_provision(self) -> None:
        """The provisioning container writes the registry through a bind mount of the certs
        folder: the folder and the files it rewrites belong to its image's user (the CA key and
        the other secrets stay root's, in their 0700 folder)."""
        owner = self.container_view().get("registry_owner")
        if not owner:
            return
        uid, gid = (int(part) for part in owner.split(":"))
        paths = [self.certs_dir] + [
            self.certs_dir / name
            for name in (ACL_FILE, CRL_FILE, CA_FILE, REGISTRY_FILE, LOCK_FILE)
        ]
        issued = self.certs_dir / ISSUED_DIR
        if issued.is_dir():
            paths += [issued, *issued.rglob("*")]
        for path in paths:
            if path.exists():
                os.chown(path, uid, gid)

    def _start_gateway(self) -> None:
        stack = StackFile.load(self.root / "stack.yml")
        build_all(stack, self.build_dir)
        backend_args = self._container_args() if self.containers else []
        env_file = self.state_dir / "gateway" / "function-env.json"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(json.dumps(self.function_env(), indent=2))
        argv = [
            sys.executable,
            "-m",
            "infra.local.gateway",
            "--stack",
            str(self.root / "stack.yml"),
            "--build-dir",
            str(self.build_dir),
            "--state-dir",
            str(self.state_dir / "gateway"),
            "--secrets-dir",
            str(self.secrets_dir),
            "--env-file",
            str(env_file),
            "--port",
            str(self.ports.gateway),
            "--targets-file",
            str(self.function_targets_file),
            *backend_args,
        ]
        self._spawn(
            "gateway",
            argv,
            self.config.child_env(),
            ready_url=f"http://127.0.0.1:{self.ports.gateway}/healthz",
            live_url=f"http://127.0.0.1:{self.ports.gateway}/healthz",
            timeout=120,
        )

    def _service_env(self, prefix: str, http_port: int, **extra: str) -> dict[str, str]:
        """Environment of a long-running service: Kafka, secrets, its ops port on loopback."""
        return self.config.child_env(
            F2_SECRETS_DIR=str(self.secrets_dir),
            KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            **{f"{prefix}_HTTP_PORT": str(http_port), f"{prefix}_HTTP_HOST": "127.0.0.1"},
            **extra,
        )

    def _bridge_env(self) -> dict[str, str]:
        return self._service_env(
            "BRIDGE",
            self.ports.bridge_http,
            BRIDGE_CLIENT_ID="f2-bridge-local-0",
            MQTT_HOST="127.0.0.1",
            MQTT_PORT=str(self.ports.mqtt),
            MQTT_USERNAME=self.secret("mqtt-bridge-username"),
            **downlink.bridge_env(),
        )

    def _gateway_client_env(self, prefix: str, http_port: int, **extra: str) -> dict[str, str]:
        return self._service_env(
            prefix,
            http_port,
            GATEWAY_URL=f"http://127.0.0.1:{self.ports.gateway}",
            GATEWAY_USERNAME=self.secret("basic-auth-user"),
            **extra,
        )

    @property
    def function_targets_file(self) -> Path:
        return self.state_dir / "prometheus" / "function-targets.json"

    def prometheus(self) -> PrometheusServer:
        return PrometheusServer(
            self.state_dir / "prometheus",
            ScrapePorts(
                prometheus=self.ports.prometheus,
                gateway=self.ports.gateway,
                bridge=self.ports.bridge_http,
                connector=self.ports.connector_http,
                autoscaler=self.ports.autoscaler_http,
                function_targets_file=self.function_targets_file,
            ),
        )

    def _spawn(
        self,
        part: str,
        argv: list[str],
        env: dict[str, str],
        *,
        ready_url: str,
        live_url: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        port = ready_url.split(":")[2].split("/")[0]
        print(f"starting {part} on 127.0.0.1:{port}", flush=True)
        proc = ManagedProcess(
            part, argv, self.log_path(part), env=env, cwd=self.root, pid_path=self.pid_path(part)
        ).start()
        self._record(proc, live_url)
        proc.wait_ready(
            lambda: requests.get(ready_url, timeout=2).status_code == 200, timeout=timeout
        )

    def _running(self, part: str) -> bool:
        try:
            pid = int(self.pid_path(part).read_text().strip())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def down(self) -> list[str]:
        stopped = []
        for part in PARTS:
            signum = signal.SIGINT if part == "postgres" else signal.SIGTERM
            if stop_pidfile(self.pid_path(part), timeout=30, signum=signum):
                stopped.append(part)
        engine = self.docker_engine()
        if engine.running():
            engine.stop()  # ours only; iptables and the bridge restored
            stopped.append("docker")
        (self.state_dir / "containers.json").unlink(missing_ok=True)
        return stopped

    # --- health ---------------------------------------------------------------------------
    def status(self) -> list[tuple[str, bool, str]]:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("postgres", self._check_postgres),
            ("kafka", self._check_kafka),
            ("mosquitto", self._check_mosquitto),
            ("gateway", self._check_gateway),
            ("bridge", lambda: self._check_http("bridge", self.ports.bridge_http)),
            ("connector", lambda: self._check_http("connector", self.ports.connector_http)),
            (
                "autoscaler",
                lambda: autoscaler_summary(f"http://127.0.0.1:{self.ports.autoscaler_http}"),
            ),
            ("prometheus", lambda: summarize_targets(f"http://127.0.0.1:{self.ports.prometheus}")),
            ("watchdog", self._check_watchdog),
        ]
        report = []
        for part, check in checks:
            try:
                report.append((part, True, check()))
            except Exception as exc:
                report.append((part, False, str(exc).splitlines()[0] if str(exc) else repr(exc)))
        return report

    def _check_postgres(self) -> str:
        with (
            psycopg2.connect(self.dsn(TIMESERIES_DB), connect_timeout=3) as conn,
            conn.cursor() as cur,
        ):
            variant = timeseries_variant(cur)
            cur.execute("SELECT to_regclass('iot_measurements') IS NOT NULL")
            row = cur.fetchone()
            rows = "no schema"
            if row and row[0]:
                cur.execute("SELECT count(*) FROM iot_measurements")
                counted = cur.fetchone()
                rows = f"{counted[0] if counted else 0} rows stored"
        conn.close()
        return f"127.0.0.1:{self.ports.postgres} {DEVICES_DB}+{TIMESERIES_DB}, {variant}, {rows}"

    def _check_kafka(self) -> str:
        nodes = range(1, self.config.kafka_brokers + 1)
        down = [self.kafka_part(n) for n in nodes if not self._running(self.kafka_part(n))]
        if down:
            raise MonitoringError(f"not running: {', '.join(down)}")
        kafka = self.kafka()
        topics = set(kafka.list_topics())
        missing = set(PIPELINE_TOPICS) - topics
        if missing:
            raise MonitoringError(f"topics missing: {sorted(missing)}")
        if len(kafka.nodes) > 1 and not kafka.all_registered():
            raise MonitoringError("not every node is a registered broker")
        brokers = f" ({len(kafka.nodes)} brokers)" if len(kafka.nodes) > 1 else ""
        return f"{self.kafka_bootstrap}{brokers} topics {', '.join(PIPELINE_TOPICS)}"

    def _check_mosquitto(self) -> str:
        if not self._running("mosquitto"):
            raise MonitoringError("not running")
        closed = [p for p in (self.ports.mqtt, self.ports.mqtt_tls) if not port_open(p)]
        if closed:
            raise MonitoringError(f"ports not answering: {closed}")
        return (
            f"internal {self.ports.mqtt}, mTLS {self.ports.mqtt_tls}, "
            f"websockets {self.ports.mqtt_ws}"
        )

    def gateway_client(self, timeouts: TimeoutConfig = PROBE_TIMEOUTS) -> OpenFaaSClient:
        """A client of the stack's gateway with its basic-auth credentials."""
        return OpenFaaSClient(
            f"http://127.0.0.1:{self.ports.gateway}",
            self.secret("basic-auth-user"),
            SecretStr(self.secret("basic-auth-password")),
            timeouts=timeouts,
        )

    def _check_gateway(self) -> str:
        with self.gateway_client() as gateway:
            gateway.healthz()
            fns = gateway.functions()
        down = [
            f"{f.name} ({f.runtime['error']})" if f.runtime.get("error") else f.name
            for f in fns
            if f.available_replicas < 1
        ]
        if down:
            raise MonitoringError(f"functions without a ready replica: {', '.join(down)}")
        listed = ", ".join(f"{f.name}={f.available_replicas} ({describe_runtime(f)})" for f in fns)
        return f"{gateway.base_url} {listed}"

    def _check_watchdog(self) -> str:
        if not self._running("watchdog"):
            raise MonitoringError("not running: dead or stuck parts are not restarted")
        done = restarts(self.state_dir)
        if not done:
            return "running, no restart so far"
        return "running, restarted " + ", ".join(f"{p} {n}x" for p, n in sorted(done.items()))

    def _check_http(self, part: str, port: int) -> str:
        if not self._running(part):
            raise MonitoringError("not running")
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3).raise_for_status()
        return f"healthz ok on {port}"
