"""Kafka for the local runtime: KRaft nodes (each broker and controller), jars from Maven Central.

One node (the default), or a quorum of three (``F2_KAFKA_BROKERS=3``): every partition on all
three nodes, ``min.insync.replicas=2``, so that with the producers' ``acks=all`` one node may
die, the controller included, without losing an acknowledged record.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from f2lib.errors import ProcessError, StreamError
from infra.deploy.docker.create_topics import TopicConfigs, ensure_topic_configs
from infra.local.ports import free_port, port_is_free, port_open
from infra.local.process import ManagedProcess
from infra.local.settings import RuntimeConfig

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "infra" / "local" / "kafka"
INSTALL_SCRIPT = REPO_ROOT / "infra" / "tools" / "setup" / "install-kafka.sh"

BROKER_JVM_OPTS = (
    "-Xms64m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:MaxMetaspaceSize=256m",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


# The CLI tools live for a second: skip the optimising compiler and the concurrent collector.
TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

KAFKA_TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "storage": "kafka.tools.StorageTool",
}


def default_libs_dir(tools_dir: Path = REPO_ROOT / ".tools") -> Path:
    """Where infra/tools/setup/install-kafka.sh puts the jars: ``<tools_dir>/kafka/libs``."""
    return tools_dir / "kafka" / "libs"


def installed(libs_dir: Path) -> bool:
    """True when ``libs_dir`` holds a complete install (its stamp file and the broker jar)."""
    return (libs_dir / ".installed").is_file() and any(libs_dir.glob("kafka_2.13-*.jar"))


def install(libs_dir: Path) -> None:
    """Run infra/tools/setup/install-kafka.sh for ``libs_dir`` (a no-op once installed)."""
    if libs_dir.name != "libs" or libs_dir.parent.name != "kafka":
        raise ProcessError(f"{libs_dir} is not a <tools>/kafka/libs folder the installer manages")
    result = subprocess.run(["bash", str(INSTALL_SCRIPT), str(libs_dir.parent.parent)], check=False)
    if result.returncode != 0:
        raise ProcessError(f"{INSTALL_SCRIPT} failed with exit code {result.returncode}")


def java_bin(java_home: Path | None = None) -> str:
    """The ``java`` of ``java_home`` (``$JAVA_HOME`` at the entry point) when given, else PATH's."""
    if java_home is not None and (java_home / "bin" / "java").exists():
        return str(java_home / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise FileNotFoundError("java not found; Kafka needs a JDK 17 or newer (make setup)")
    return found


def generate_cluster_id() -> str:
    """A random cluster id in Kafka's form: a UUID as unpadded URL-safe base64, no leading '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def tool_argv(
    main_class: str, *args: str, libs_dir: Path | None = None, java_home: Path | None = None
) -> list[str]:
    """The command line running a Kafka CLI tool class (or a short name of KAFKA_TOOLS)."""
    libs = libs_dir or default_libs_dir()
    return [
        java_bin(java_home),
        *TOOL_JVM_OPTS,
        f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2-tools.xml'}",
        "-cp",
        f"{libs}/*",
        KAFKA_TOOLS.get(main_class, main_class),
        *args,
    ]


class KafkaServer:
    """One Kafka node in ``state_dir`` serving clients on 127.0.0.1:``port``.

    The node is broker and KRaft controller at once (the controller on ``controller_port``,
    a free port when not given). Its storage is formatted once with ``cluster_id`` (generated
    when not given); later starts on the same ``state_dir`` keep the data. ``jvm_opts``
    replaces :data:`BROKER_JVM_OPTS` (the heap size is ``heap`` either way). In a quorum
    (:class:`KafkaCluster`) ``peers`` are the other voters' (node id, controller port),
    ``replication`` and ``min_insync`` the topics' defaults, and ``bootstrap_servers`` every
    node's address for the clients this object makes.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int,
        controller_port: int | None = None,
        *,
        partitions: int = 3,
        libs_dir: Path | None = None,
        heap: str = "512m",
        jvm_opts: Sequence[str] | None = None,
        java_home: Path | None = None,
        container_listener: tuple[str, int] | None = None,
        node_id: int = 1,
        peers: Sequence[tuple[int, int]] = (),
        replication: int = 1,
        min_insync: int = 1,
        cluster_id: str | None = None,
        bootstrap_servers: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.node_id = node_id
        self.peers = tuple(peers)
        self.replication = replication
        self.min_insync = min_insync
        self.cluster_id = cluster_id
        self._bootstrap_servers = bootstrap_servers
        # (address, port) of a second listener for containers (on the Docker bridge address).
        self.container_listener = container_listener
        self.port = port
        self.controller_port = controller_port
        self.partitions = partitions
        self.libs_dir = libs_dir or default_libs_dir()
        self.heap = heap
        self.jvm_opts = tuple(jvm_opts) if jvm_opts else BROKER_JVM_OPTS
        self.java_home = java_home
        self.data_dir = state_dir / "data"
        self.config_path = state_dir / "server.properties"
        self.log_path = state_dir / "kafka.log"
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def bootstrap_servers(self) -> str:
        """Where this object's clients connect: every node of its quorum."""
        return self._bootstrap_servers or self.bootstrap

    def tool_argv(self, main_class: str, *args: str) -> list[str]:
        """The command line running a Kafka CLI tool class with this broker's classpath."""
        return tool_argv(main_class, *args, libs_dir=self.libs_dir, java_home=self.java_home)

    def _resolve_controller_port(self) -> int:
        if self.controller_port is not None:
            return self.controller_port
        previous = self._previous_controller_port()
        if previous is not None and port_is_free(previous):
            return previous
        return free_port()

    def _previous_controller_port(self) -> int | None:
        try:
            lines = self.config_path.read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            if line.startswith("controller.quorum.voters="):
                for voter in line.split("=", 1)[1].split(","):
                    if voter.startswith(f"{self.node_id}@"):
                        return int(voter.rsplit(":", 1)[1])
        return None

    def voters(self) -> str:
        """``controller.quorum.voters``: this node and its peers, ``<id>@127.0.0.1:<port>``."""
        assert self.controller_port is not None
        members = sorted([(self.node_id, self.controller_port), *self.peers])
        return ",".join(f"{node}@127.0.0.1:{port}" for node, port in members)

    def write_config(self) -> None:
        self.controller_port = self._resolve_controller_port()
        template = Template((CONFIG_DIR / "server.properties.template").read_text())
        text = template.substitute(
            port=self.port,
            controller_port=self.controller_port,
            log_dir=self.data_dir,
            partitions=self.partitions,
            node_id=self.node_id,
            voters=self.voters(),
            replication=self.replication,
            min_insync=self.min_insync,
        )
        if self.container_listener is not None:
            host, port = self.container_listener
            text = (
                text.replace(
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTAINERS://{host}:{port},",
                )
                .replace(
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTAINERS://{host}:{port}",
                )
                .replace(
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "listener.security.protocol.map="
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTAINERS:PLAINTEXT",
                )
            )
        self.config_path.write_text(text)

    def format_storage(self) -> None:
        """Format the KRaft storage with a new cluster id unless it is formatted already."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or generate_cluster_id()
        fmt = ManagedProcess(
            "kafka-storage-format",
            self.tool_argv("storage", "format", "-t", cluster_id, "-c", str(self.config_path)),
            self.state_dir / "format.log",
        ).start()
        assert fmt.popen is not None
        if fmt.popen.wait(timeout=120) != 0:
            raise ProcessError(f"formatting Kafka storage failed; see {fmt.log_path}")
        logger.info("formatted Kafka storage %s cluster_id=%s", self.data_dir, cluster_id)

    def start(self, *, pid_path: Path | None = None, timeout: float = 120.0) -> KafkaServer:
        self.launch(pid_path=pid_path)
        return self.wait(timeout)

    def launch(self, *, pid_path: Path | None = None) -> ManagedProcess:
        """Start the node's process (its storage formatted first, once) without waiting."""
        if not installed(self.libs_dir):
            raise FileNotFoundError(
                f"Kafka jars not found in {self.libs_dir}; run infra/tools/setup/install-kafka.sh"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.format_storage()
        self.process = ManagedProcess(
            "kafka",
            [
                java_bin(self.java_home),
                f"-Xmx{self.heap}",
                *self.jvm_opts,
                f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2-broker.xml'}",
                f"-Dkafka.logs.dir={self.state_dir / 'logs'}",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.Kafka",
                str(self.config_path),
            ],
            self.log_path,
            cwd=self.state_dir,
            pid_path=pid_path,
        ).start()
        return self.process

    def wait(self, timeout: float = 120.0) -> KafkaServer:
        """Wait until the launched node serves; stop it and raise when it does not."""
        assert self.process is not None
        try:
            self.process.wait_ready(self.ready, timeout=timeout)
        except ProcessError:
            self.stop()
            raise
        logger.info("Kafka node %d ready on %s (controller port %s)", self.node_id,
                    self.bootstrap, self.controller_port)  # fmt: skip
        return self

    def admin(self, timeout_ms: int = 10_000) -> Any:
        """A kafka-python admin client for this broker; the caller closes it."""
        return KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers.split(","),
            client_id="f2pipe-runtime",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )

    def ready(self) -> bool:
        """True once the node answers a metadata request and lists itself as a live broker."""
        if not port_open(self.port):
            return False
        with KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="f2pipe-runtime",
            request_timeout_ms=5_000,
            bootstrap_timeout_ms=5_000,
        ) as admin:
            return self.node_id in live_brokers(admin.describe_cluster())

    def list_topics(self) -> list[str]:
        """The names of the topics that are not Kafka's own (``__consumer_offsets`` ...)."""
        try:
            with self.admin() as admin:
                names = [str(name) for name in admin.list_topics()]
        except KafkaError as exc:
            raise StreamError(f"listing topics on {self.bootstrap_servers} failed: {exc}") from exc
        return sorted(name for name in names if not name.startswith("__"))

    def create_topics(
        self,
        names: Iterable[str],
        partitions: int | None = None,
        configs: TopicConfigs | None = None,
    ) -> list[str]:
        """Create the topics that do not exist yet; returns the names it created.

        ``configs`` (topic -> key -> value, e.g. ``topic_configs()``'s retention) are set on the
        topics created and on those that exist already.
        """
        wanted = list(names)
        count = partitions or self.partitions
        configs = {name: keys for name, keys in (configs or {}).items() if name in wanted}
        missing: list[str] = []
        try:
            with self.admin() as admin:
                existing = set(admin.list_topics())
                ensure_topic_configs(admin, {n: c for n, c in configs.items() if n in existing})
                missing = [name for name in wanted if name not in existing]
                if not missing:
                    return []
                spec: dict[str, dict[str, Any]] = {
                    name: {"num_partitions": count, "replication_factor": self.replication}
                    for name in missing
                }
                for name in missing:
                    if configs.get(name):
                        spec[name]["configs"] = dict(configs[name])
                result = admin.create_topics(spec, raise_errors=False)
                for topic in result["topics"]:
                    code = topic["error_code"]
                    if code and code != TopicAlreadyExistsError.errno:
                        raise StreamError(
                            f"creating topic {topic['name']} on {self.bootstrap} failed:"
                            f" error {code} {topic.get('error_message') or ''}".rstrip()
                        )
                admin.wait_for_topics(missing, timeout_ms=30_000)
        except KafkaError as exc:
            raise StreamError(
                f"creating topics {wanted} on {self.bootstrap} failed: {exc}"
            ) from exc
        logger.info("created topics %s partitions=%s on %s", missing, count, self.bootstrap)
        return missing

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout=timeout)
            self.process = None


def live_brokers(description: Mapping[str, Any]) -> set[int]:
    """The ids of the registered, unfenced brokers of a ``describe_cluster()`` answer."""
    return {
        int(broker.get("broker_id", broker.get("node_id", -1)))
        for broker in description.get("brokers") or []
        if not broker.get("is_fenced", False)
    }


class KafkaCluster:
    """The stack's Kafka: one node, or three of one KRaft quorum (``brokers=3``).

    Node ``n`` lives in ``state_dir`` (node 1) or ``state_dir/node-<n>``, serves clients on
    ``ports[n-1]`` and its controller on ``controller_ports[n-1]``. Three nodes replicate every
    partition three times with ``min.insync.replicas=2``; one keeps replication factor 1.
    """

    def __init__(
        self,
        state_dir: Path,
        ports: Sequence[int],
        controller_ports: Sequence[int],
        **node_options: Any,
    ) -> None:
        brokers = len(ports)
        if brokers not in (1, 3) or len(controller_ports) != brokers:
            raise ProcessError(
                f"{brokers} Kafka nodes: the local runtime runs 1, or 3 (a quorum that "
                "survives one node)"
            )
        if brokers > 1 and node_options.get("container_listener") is not None:
            raise ProcessError("three Kafka nodes run with process replicas only")
        bootstrap = ",".join(f"127.0.0.1:{port}" for port in ports)
        replication, min_insync = (3, 2) if brokers == 3 else (1, 1)
        cluster_id = self._cluster_id(state_dir) if brokers > 1 else None
        self.state_dir = state_dir
        self.nodes = [
            KafkaServer(
                state_dir if node == 1 else state_dir / f"node-{node}",
                ports[node - 1],
                controller_ports[node - 1],
                node_id=node,
                peers=[(n, controller_ports[n - 1]) for n in range(1, brokers + 1) if n != node],
                replication=replication,
                min_insync=min_insync,
                cluster_id=cluster_id,
                bootstrap_servers=bootstrap,
                **node_options,
            )
            for node in range(1, brokers + 1)
        ]

    @staticmethod
    def _cluster_id(state_dir: Path) -> str:
        """The quorum's cluster id, made once and kept (every node is formatted with it)."""
        path = state_dir / "cluster-id"
        if not path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(generate_cluster_id() + "\n")
        return path.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return self.nodes[0].bootstrap_servers

    @property
    def partitions(self) -> int:
        return self.nodes[0].partitions

    def tool_argv(self, main_class: str, *args: str) -> list[str]:
        return self.nodes[0].tool_argv(main_class, *args)

    def processes(self) -> list[ManagedProcess]:
        return [node.process for node in self.nodes if node.process is not None]

    def start(
        self, *, pid_paths: Sequence[Path | None] = (), timeout: float = 120.0
    ) -> KafkaCluster:
        """Launch every node (a quorum elects its leader once most of it runs), then wait for
        each and for all of them to be registered brokers."""
        paths = list(pid_paths) or [None] * len(self.nodes)
        for node, path in zip(self.nodes, paths, strict=True):
            node.launch(pid_path=path)
        try:
            for node in self.nodes:
                node.wait(timeout)
            self.nodes[0].process.wait_ready(self.all_registered, timeout)  # type: ignore[union-attr]
        except ProcessError:
            self.stop()
            raise
        return self

    def all_registered(self) -> bool:
        with self.nodes[0].admin(timeout_ms=5_000) as admin:
            return len(live_brokers(admin.describe_cluster())) == len(self.nodes)

    def list_topics(self) -> list[str]:
        return self.nodes[0].list_topics()

    def create_topics(
        self,
        names: Iterable[str],
        partitions: int | None = None,
        configs: TopicConfigs | None = None,
    ) -> list[str]:
        return self.nodes[0].create_topics(names, partitions, configs)

    def stop(self, timeout: float = 30.0) -> None:
        for node in reversed(self.nodes):
            node.stop(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.local.launch.kafka {argv,run,tools} ...``: the Kafka CLI tools for make."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.launch.kafka", description=main.__doc__
    )
    parser.add_argument(
        "--libs-dir", type=Path, default=None, help="default: $F2_TOOLS_DIR/kafka/libs"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("argv", "print the tool's command line"), ("run", "run the tool")):
        command = commands.add_parser(name, help=text)
        command.add_argument("tool", help=f"a main class or one of: {', '.join(KAFKA_TOOLS)}")
        command.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments")
    commands.add_parser("tools", help="list the short tool names and their main classes")
    options = parser.parse_args(argv)

    if options.command == "tools":
        for name, main_class in KAFKA_TOOLS.items():
            print(f"{name}\t{main_class}")
        return 0
    config = RuntimeConfig()
    libs_dir = options.libs_dir or config.kafka_libs_dir
    if not installed(libs_dir):
        print(
            f"Kafka jars not found in {libs_dir}; run infra/tools/setup/install-kafka.sh",
            file=sys.stderr,
        )
        return 2
    command_line = tool_argv(
        options.tool, *options.args, libs_dir=libs_dir, java_home=config.java_home
    )
    if options.command == "argv":
        print(shlex.join(command_line))
        return 0
    os.execv(command_line[0], command_line)  # noqa: S606 - replaces this process with the tool


if __name__ == "__main__":
    sys.exit(main())
