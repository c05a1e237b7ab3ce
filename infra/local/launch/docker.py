"""A Docker engine for the container backend: the user's own when one answers, else one of ours.

Where ``DOCKER_HOST`` is set or the default socket answers, that engine is used as it is and
never stopped. Otherwise containerd and dockerd (Debian's docker.io) are started with sockets,
state and data of their own under the runtime's state folder (never ``/run/containerd`` or
``/var/lib/docker``), published ports on loopback only (``--ip 127.0.0.1``). dockerd rewrites
iptables (the FORWARD policy becomes DROP) and adds the ``docker0`` bridge: the rules are saved
before it starts and restored, and the bridge removed, when it stops.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.local.process import ManagedProcess, ProcessError, pid_alive, stop_pidfile

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/var/run/docker.sock")
# Debian's client: the machine may also carry a newer CLI without buildx in /usr/local/bin.
DEBIAN_DOCKER = Path("/usr/bin/docker")


def docker_cli() -> str:
    """The docker client to use: Debian's when installed, else the one on PATH."""
    if DEBIAN_DOCKER.exists():
        return str(DEBIAN_DOCKER)
    found = shutil.which("docker")
    if found is None:
        raise ProcessError("no docker client installed (make setup installs Debian's docker.io)")
    return found


@dataclass(frozen=True, slots=True)
class EngineFiles:
    """Where our own engine keeps its sockets, state, data, logs and the saved iptables rules."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def docker_socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def iptables_saved(self) -> Path:
        return self.root / "iptables.before"

    @property
    def bridge_created(self) -> Path:
        return self.root / "docker0.created"

    def pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"


class DockerEngine:
    """The engine the container backend talks to (``host`` is its ``DOCKER_HOST``)."""

    def __init__(self, state_dir: Path, docker_host: str | None = None) -> None:
        self.files = EngineFiles(state_dir)
        self._user_host = docker_host or None
        self.host = self._user_host or f"unix://{DEFAULT_SOCKET}"
        self.owned = False

    def client_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with ``DOCKER_HOST`` pointing at this engine."""
        return {**base, "DOCKER_HOST": self.host}

    def answers(self, host: str | None = None) -> bool:
        try:
            result = subprocess.run(
                [docker_cli(), "version", "--format", "{{.Server.Version}}"],
                env={"DOCKER_HOST": host or self.host, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired, ProcessError):
            return False
        return result.returncode == 0 and bool(result.stdout.strip())

    def start(self, timeout: float = 60.0) -> str:
        """Use the user's engine when it answers, else start ours; returns ``DOCKER_HOST``."""
        ours = f"unix://{self.files.docker_socket}"
        if self._user_host is not None:
            if not self.answers(self._user_host):
                raise ProcessError(f"DOCKER_HOST={self._user_host} does not answer")
            self.host = self._user_host
            return self.host
        if self.files.docker_socket.exists() and self.answers(ours):
            self.host, self.owned = ours, True  # ours, from an earlier `make up`
            return self.host
        if DEFAULT_SOCKET.exists() and self.answers(f"unix://{DEFAULT_SOCKET}"):
            self.host = f"unix://{DEFAULT_SOCKET}"
            return self.host
        self._start_own(timeout)
        self.host, self.owned = ours, True
        return self.host

    def _start_own(self, timeout: float) -> None:
        for binary in ("containerd", "dockerd"):
            if shutil.which(binary) is None:
                raise ProcessError(f"{binary} not installed (make setup installs docker.io)")
        files = self.files
        files.root.mkdir(parents=True, exist_ok=True)
        self.stop()  # leftovers of a crashed run
        if shutil.which("iptables-save") and not files.iptables_saved.exists():
            saved = subprocess.run(["iptables-save"], capture_output=True, check=False)
            if saved.returncode == 0:
                files.iptables_saved.write_bytes(saved.stdout)
        if not Path("/sys/class/net/docker0").exists():
            files.bridge_created.touch()
        containerd = ManagedProcess(
            "containerd",
            [
                "containerd",
                "--address",
                str(files.containerd_socket),
                "--root",
                str(files.root / "containerd" / "root"),
                "--state",
                str(files.root / "containerd" / "state"),
            ],
            files.log("containerd"),
            pid_path=files.pid("containerd"),
        ).start()
        containerd.wait_ready(files.containerd_socket.exists, timeout)
        dockerd = ManagedProcess(
            "dockerd",
            [
                "dockerd",
                "--host",
                f"unix://{files.docker_socket}",
                "--containerd",
                str(files.containerd_socket),
                "--data-root",
                str(files.root / "data"),
                "--exec-root",
                str(files.root / "exec"),
                "--pidfile",
                str(files.root / "dockerd.daemon.pid"),
                "--storage-driver",
                "overlay2",
                "--ip",
                "127.0.0.1",
            ],
            files.log("dockerd"),
            pid_path=files.pid("dockerd"),
        ).start()
        dockerd.wait_ready(lambda: self.answers(f"unix://{files.docker_socket}"), timeout)
        logger.info("started our own Docker engine on unix://%s", files.docker_socket)

    def running(self) -> bool:
        """Our own engine's processes are alive (always False for the user's engine)."""
        try:
            pid = int(self.files.pid("dockerd").read_text().strip())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def stop(self) -> None:
        """Stop our own engine (never the user's) and undo what dockerd changed on the host."""
        files = self.files
        stopped = stop_pidfile(files.pid("dockerd"), timeout=30)
        stop_pidfile(files.pid("containerd"), timeout=15)
        if files.iptables_saved.exists():
            restored = subprocess.run(
                ["iptables-restore"], input=files.iptables_saved.read_bytes(), check=False
            )
            if restored.returncode == 0:
                files.iptables_saved.unlink()
            else:
                logger.warning("iptables-restore failed; rules kept in %s", files.iptables_saved)
        if files.bridge_created.exists():
            if Path("/sys/class/net/docker0").exists():
                subprocess.run(["ip", "link", "delete", "docker0"], check=False)
            files.bridge_created.unlink()
        if stopped:
            logger.info("stopped our own Docker engine")

    def bridge_network(self) -> tuple[str, str]:
        """The host's address on the default bridge (where containers reach host services) and
        the bridge's subnet."""
        result = subprocess.run(
            [docker_cli(), "network", "inspect", "bridge"],
            env={"DOCKER_HOST": self.host, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProcessError(f"docker network inspect bridge failed: {result.stderr.strip()}")
        with contextlib.suppress(KeyError, IndexError, ValueError, TypeError):
            config = json.loads(result.stdout)[0]["IPAM"]["Config"][0]
            subnet = ipaddress.ip_network(config["Subnet"])
            # Docker 20.10 lists only the subnet of the default bridge; its gateway is the first
            # host address (172.17.0.1 on docker0 by default).
            gateway = config.get("Gateway") or str(next(subnet.hosts()))
            return str(gateway), str(subnet)
        raise ProcessError("the bridge network has no subnet")

    def bridge_gateway(self) -> str:
        return self.bridge_network()[0]
