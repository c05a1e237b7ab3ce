"""Where a function's replicas run: the ``ReplicaBackend`` seam, and replicas as processes.

A backend turns a deployment (a :class:`FunctionSpec`) into replicas, each serving the function
on a loopback port. Two backends exist: processes of the template's entrypoint run from the
function's build folder (fast, the default), and containers of the deployed image
(``containers.py``: what ``faas-cli up`` ships). The gateway, its pools and its API are the same
for both.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import urllib3

from f2lib.errors import ProcessError, ReplicaError
from infra.deploy.stackfile import FunctionSpec
from infra.local.ports import free_port, port_open
from infra.local.process import ManagedProcess, pid_alive, stop_group

logger = logging.getLogger(__name__)

READY_PATH = "/_/ready"
HEALTH_PATH = "/_/health"
SECRETS_MOUNT = "/var/openfaas/secrets"


class Replica(Protocol):
    """One running copy of a function."""

    index: int
    port: int
    log_path: Path
    watchdog: bool

    @property
    def url(self) -> str: ...

    @property
    def instance(self) -> str: ...

    def start(self, timeout: float) -> None: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


class ReplicaBackend(Protocol):
    """Makes replicas of deployments."""

    kind: str

    def prepare(self, spec: FunctionSpec, secrets: Mapping[str, Path]) -> None:
        """Check that ``spec`` can run here (its image, its build folder); ReplicaError if not."""
        ...

    def replica(self, spec: FunctionSpec, index: int, env: Mapping[str, str]) -> Replica: ...

    def runs_watchdog(self, spec: FunctionSpec) -> bool: ...

    def close(self) -> None: ...


@dataclass
class ProcessBackendConfig:
    """What process replicas need: build folders, their own state, an optional real watchdog."""

    build_dir: Path
    state_dir: Path
    python: str
    base_env: dict[str, str] = field(default_factory=dict)
    watchdog_bin: Path | None = None
    watchdog_function: str | None = None


def ready(http: urllib3.PoolManager, url: str, port: int) -> bool:
    """The replica listens and answers its ready path with 200."""
    if not port_open(port):
        return False
    resp = http.request("GET", url + READY_PATH, timeout=2.0, retries=False)
    return int(resp.status) == 200


class ProcessReplica:
    """The template's entrypoint (or of-watchdog in front of it) as a process on a loopback port."""

    def __init__(
        self,
        backend: ProcessBackend,
        spec: FunctionSpec,
        index: int,
        env: Mapping[str, str],
        use_watchdog: bool,
    ) -> None:
        cfg = backend.config
        self.index = index
        self.port = free_port()
        self.log_path = cfg.state_dir / "logs" / f"{spec.name}-{index}.log"
        self._http = backend.http
        self._name = spec.name
        full_env = {**cfg.base_env, **env}
        argv: list[str]
        self.watchdog = use_watchdog and cfg.watchdog_bin is not None
        if self.watchdog:
            upstream = free_port()
            full_env.update(
                {
                    "port": str(self.port),
                    "mode": "http",
                    "fprocess": f"{cfg.python} index.py",
                    "upstream_url": f"http://127.0.0.1:{upstream}",
                    "ready_path": READY_PATH,
                    "F2_UPSTREAM_PORT": str(upstream),
                    "prefix_logs": "false",
                }
            )
            full_env.setdefault("exec_timeout", "60s")
            full_env.setdefault("write_timeout", "65s")
            full_env.setdefault("read_timeout", "65s")
            argv = [str(cfg.watchdog_bin)]
        else:
            full_env["F2_UPSTREAM_PORT"] = str(self.port)
            argv = [cfg.python, "index.py"]
        self.process = ManagedProcess(
            f"{spec.name}-{index}",
            argv,
            self.log_path,
            env=full_env,
            cwd=cfg.build_dir / spec.name,
            pid_path=backend.pids_dir / f"{spec.name}-{index}.pid",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instance(self) -> str:
        return f"{self._name}-{self.index}"

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        try:
            self.process.wait_ready(lambda: ready(self._http, self.url, self.port), timeout)
        except ProcessError as exc:
            raise ReplicaError(str(exc)) from exc

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        self.process.stop(timeout=20)


class ProcessBackend:
    """Replicas as processes of the function's build folder (``build/<fn>``).

    Each replica's pid is kept in ``<state>/pids``; a gateway that starts finds there the
    replicas of an earlier one that was killed (they run on in sessions of their own) and
    stops them, as the container backend removes an earlier run's containers.
    """

    kind = "processes"

    def __init__(self, config: ProcessBackendConfig, http: urllib3.PoolManager) -> None:
        self.config = config
        self.http = http
        self.pids_dir = config.state_dir / "pids"
        self.remove_leftovers()

    def remove_leftovers(self) -> list[int]:
        """Stop the replicas an earlier gateway left running; returns their pids."""
        stopped = []
        build_dir = self.config.build_dir.resolve()
        for pid_file in sorted(self.pids_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                cwd = Path(f"/proc/{pid}/cwd").resolve()
                # the pid may have been reused since: only a process in a build folder is ours
                if pid_alive(pid) and cwd.is_relative_to(build_dir):
                    logger.warning("stopping replica %s (pid %d) of an earlier gateway",
                                   pid_file.stem, pid)  # fmt: skip
                    stop_group(pid, timeout=10)
                    stopped.append(pid)
            pid_file.unlink(missing_ok=True)
        return stopped

    def prepare(self, spec: FunctionSpec, secrets: Mapping[str, Path]) -> None:
        context = self.config.build_dir / spec.name
        if not (context / "index.py").is_file():
            raise ReplicaError(f"no build folder for {spec.name!r} at {context}; build it first")

    def replica(self, spec: FunctionSpec, index: int, env: Mapping[str, str]) -> Replica:
        use_watchdog = self.config.watchdog_function == spec.name and index == 0
        return ProcessReplica(self, spec, index, env, use_watchdog)

    def runs_watchdog(self, spec: FunctionSpec) -> bool:
        return self.config.watchdog_bin is not None and self.config.watchdog_function == spec.name

    def close(self) -> None:
        pass


def write_secrets(
    source_dir: Path,
    target: Path,
    names: tuple[str, ...],
    *,
    owner: tuple[int, int] | None = None,
) -> dict[str, Path]:
    """Only the secrets a function names, as OpenFaaS mounts them; returns those found.

    Files are 0600 (0400 and owned by ``owner`` for a container's own user, which reads them
    through a read-only bind mount). The folder is kept and its files replaced one by one
    (written aside, then renamed), so a running container's mount sees the new values.
    """
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    found: dict[str, Path] = {}
    for stale in target.iterdir():
        if stale.name not in names:
            stale.unlink(missing_ok=True)
    for name in names:
        source = source_dir / name
        if not source.is_file():
            continue
        path = target / name
        staging = target / f".{name}.new"
        staging.unlink(missing_ok=True)
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())
        if owner is not None:
            with contextlib.suppress(OSError):
                os.chown(staging, *owner)
                staging.chmod(0o400)
        staging.replace(path)
        found[name] = path
    if owner is not None:
        with contextlib.suppress(OSError):
            os.chown(target, *owner)
            target.chmod(0o500)
    else:
        target.chmod(0o700)
    return found
