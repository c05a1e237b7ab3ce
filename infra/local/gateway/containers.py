"""Replicas as containers of the deployed image: what ``faas-cli up`` ships, run on one box.

Each replica is ``docker run`` of the deployment's image with its environment (never the
host's), the function's secrets bind-mounted read-only at ``/var/openfaas/secrets`` (owned by
the image's own user, which the container runs as), the memory limit of the deployment, and its
port 8080 published on loopback only. The names stack.yml uses for services (``kafka``,
``postgres``, ``mosquitto``, ``minio``) resolve to the Docker bridge address where the runtime's
services listen for containers. Logs come from ``docker logs -f`` into the replica's log file.
"""

from __future__ import annotations

import json
import logging
import re
import secrets as token
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from f2lib.errors import ProcessError, ReplicaError
from infra.deploy.stackfile import FunctionSpec
from infra.local.gateway.backends import SECRETS_MOUNT, Replica, ready
from infra.local.launch.docker import docker_cli
from infra.local.ports import free_port
from infra.local.process import ManagedProcess, log_tail

logger = logging.getLogger(__name__)

FUNCTION_PORT = 8080
SERVICE_ALIASES = ("kafka", "postgres", "mosquitto", "minio", "gateway", "host.docker.internal")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt])?[bB]?\s*$")


def docker_memory(quantity: str) -> str | None:
    """A Kubernetes/OpenFaaS memory quantity (``256Mi``, ``1Gi``, ``512M``) as docker's ``256m``."""
    match = _MEMORY.match(quantity)
    if match is None:
        return None
    number, unit = match.groups()
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    key = (unit or "").rstrip("i").upper()
    return str(int(float(number) * factor[key]))


@dataclass
class ContainerBackendConfig:
    """Where the containers run and how they reach the runtime's services."""

    state_dir: Path
    docker_host: str
    service_host: str
    gateway_id: str
    aliases: tuple[str, ...] = SERVICE_ALIASES
    pull_timeout_s: float = 120.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # function -> bind mounts ("host:container[:ro]") beyond the secrets, set by the runtime.
    mounts: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the gateway needs to know of an image: its user and whether it runs of-watchdog."""

    ref: str
    uid: int
    gid: int
    watchdog: bool


class Docker:
    """The docker client, pointed at one engine."""

    def __init__(self, host: str) -> None:
        self.env = {"DOCKER_HOST": host, "PATH": "/usr/bin:/bin:/usr/local/bin"}

    def run(
        self, args: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [docker_cli(), *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ReplicaError(f"docker {args[0]} timed out after {timeout:.0f}s") from exc
        except ProcessError as exc:
            raise ReplicaError(str(exc)) from exc
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ReplicaError(f"docker {args[0]} failed: {' '.join(detail)}")
        return result


class ContainerReplica:
    """One container of a function's image, serving on a loopback port."""

    def __init__(
        self,
        backend: ContainerBackend,
        spec: FunctionSpec,
        index: int,
        env: Mapping[str, str],
        secrets_dir: Path,
    ) -> None:
        self.index = index
        self.port = free_port()
        self.spec = spec
        self.log_path = backend.config.state_dir / "logs" / f"{spec.name}-{index}.log"
        self.container = f"f2-{spec.name}-{index}-{token.token_hex(3)}"
        self._backend = backend
        self._env = dict(env)
        self._secrets_dir = secrets_dir
        self._follower: ManagedProcess | None = None
        self._started_at = time.monotonic()
        facts = backend.facts(spec.image)
        self.watchdog = facts.watchdog

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instance(self) -> str:
        return self.container

    def _run_args(self) -> list[str]:
        cfg = self._backend.config
        env_file = cfg.state_dir / "env" / f"{self.container}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self._env.items() if "\n" not in v))
        args = [
            "run",
            "-d",
            "--name",
            self.container,
            "--label",
            f"f2pipe.gateway={cfg.gateway_id}",
            "--label",
            f"f2pipe.function={self.spec.name}",
            "-p",
            f"127.0.0.1:{self.port}:{FUNCTION_PORT}",
            "--env-file",
            str(env_file),
            "-v",
            f"{self._secrets_dir}:{SECRETS_MOUNT}:ro",
        ]
        for mount in cfg.mounts.get(self.spec.name, []):
            args += ["-v", mount]
        for alias in cfg.aliases:
            args += ["--add-host", f"{alias}:{cfg.service_host}"]
        memory = docker_memory(self.spec.limits.get("memory", ""))
        if memory is not None:
            args += ["--memory", memory]
        reservation = docker_memory(self.spec.requests.get("memory", ""))
        if reservation is not None and (memory is None or int(reservation) <= int(memory)):
            args += ["--memory-reservation", reservation]
        return [*args, self.spec.image]

    def start(self, timeout: float = 60.0) -> None:
        docker = self._backend.docker
        docker.run(self._run_args(), timeout=60)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._follower = ManagedProcess(
            f"logs-{self.container}",
            [docker_cli(), "logs", "-f", self.container],
            self.log_path,
            env=docker.env,
        ).start()
        deadline = time.monotonic() + timeout
        self._started_at = time.monotonic()
        while time.monotonic() < deadline:
            state = self._backend.state(self.container)
            if state is not None and not state.get("Running"):
                code = state.get("ExitCode")
                time.sleep(0.3)  # the log follower's last lines
                self.stop()
                raise ReplicaError(
                    f"container of {self.spec.name} ({self.spec.image}) exited at start "
                    f"with code {code}; log tail:\n{log_tail(self.log_path, 20)}"
                )
            try:
                if ready(self._backend.http, self.url, self.port):
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ReplicaError(
            f"container of {self.spec.name} not ready after {timeout:.0f}s; "
            f"log tail:\n{log_tail(self.log_path, 20)}"
        )

    def alive(self) -> bool:
        return self._backend.running(self.container, self._started_at)

    def stop(self) -> None:
        self._backend.docker.run(["rm", "-f", self.container], check=False, timeout=60)
        if self._follower is not None:
            self._follower.stop(timeout=5)
        env_file = self._backend.config.state_dir / "env" / f"{self.container}.env"
        env_file.unlink(missing_ok=True)


class ContainerBackend:
    """Replicas as containers on one Docker engine."""

    kind = "containers"

    def __init__(self, config: ContainerBackendConfig, http: urllib3.PoolManager) -> None:
        self.config = config
        self.http = http
        self.docker = Docker(config.docker_host)
        self._facts: dict[str, ImageFacts] = {}
        self._running: set[str] = set()
        self._listed_at = 0.0
        self._lock = threading.Lock()
        self.remove_all()  # containers of an earlier run of this gateway

    def facts(self, image: str) -> ImageFacts:
        """The image's user and watchdog, pulling the image when it is not here."""
        with self._lock:
            known = self._facts.get(image)
        if known is not None:
            return known
        inspected = self.docker.run(["image", "inspect", image], check=False)
        if inspected.returncode != 0:
            pulled = self.docker.run(
                ["pull", image], check=False, timeout=self.config.pull_timeout_s
            )
            if pulled.returncode != 0:
                why = (pulled.stderr or pulled.stdout).strip().splitlines()[-1:]
                raise ReplicaError(f"image {image} not found here nor pullable: {' '.join(why)}")
            inspected = self.docker.run(["image", "inspect", image])
        config = json.loads(inspected.stdout)[0].get("Config") or {}
        env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
        user = self.docker.run(
            ["run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u"], timeout=60
        ).stdout.strip()
        group = self.docker.run(
            ["run", "--rm", "--network", "none", "--entrypoint", "id", image, "-g"], timeout=60
        ).stdout.strip()
        facts = ImageFacts(image, int(user), int(group), env.get("F2_WATCHDOG") != "none")
        with self._lock:
            self._facts[image] = facts
        return facts

    def prepare(self, spec: FunctionSpec, secrets: Mapping[str, Path]) -> None:
        self.facts(spec.image)

    def secrets_owner(self, spec: FunctionSpec) -> tuple[int, int]:
        facts = self.facts(spec.image)
        return facts.uid, facts.gid

    def replica(self, spec: FunctionSpec, index: int, env: Mapping[str, str]) -> Replica:
        secrets_dir = Path(env.get("F2_SECRETS_DIR", ""))
        container_env = {k: v for k, v in env.items() if k != "F2_SECRETS_DIR"}
        return ContainerReplica(
            self, spec, index, {**self.config.extra_env, **container_env}, secrets_dir
        )

    def runs_watchdog(self, spec: FunctionSpec) -> bool:
        try:
            return self.facts(spec.image).watchdog
        except ReplicaError:
            return False

    def state(self, container: str) -> dict[str, object] | None:
        result = self.docker.run(
            ["inspect", "--format", "{{json .State}}", container], check=False, timeout=30
        )
        if result.returncode != 0:
            return None
        state: dict[str, object] = json.loads(result.stdout)
        return state

    def running(self, container: str, started_at: float = 0.0) -> bool:
        """From one ``docker ps`` a second at most, however many replicas ask (and at once for a
        container started after the last listing)."""
        with self._lock:
            if time.monotonic() - self._listed_at > 1.0 or self._listed_at < started_at:
                listed = self.docker.run(
                    [
                        "ps",
                        "--filter",
                        f"label=f2pipe.gateway={self.config.gateway_id}",
                        "--format",
                        "{{.Names}}",
                    ],
                    check=False,
                    timeout=30,
                )
                if listed.returncode == 0:
                    self._running = set(listed.stdout.split())
                    self._listed_at = time.monotonic()
            return container in self._running

    def remove_all(self) -> None:
        listed = self.docker.run(
            ["ps", "-aq", "--filter", f"label=f2pipe.gateway={self.config.gateway_id}"],
            check=False,
        )
        ids = listed.stdout.split() if listed.returncode == 0 else []
        if ids:
            self.docker.run(["rm", "-f", *ids], check=False, timeout=120)

    def close(self) -> None:
        self.remove_all()
