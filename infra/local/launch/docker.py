"""A Docker engine for the container backend: the user's own when one answers, else one of ours.

Where ``DOCKER_HOST`` is set or the default socket answers, that engine is used as it is and
never stopped. Otherwise containerd and dockerd (Debian's docker.io) are started with sockets,
state and data of their own under the runtime's state folder (never ``/run/containerd`` or
``/var/lib/docker``), published ports on loopback only (``--ip 127.0.0.1``), on a bridge of
their own (``f2d<hash>``, a private /24) instead of ``docker0``. Our dockerd does not manage
iptables (``--iptables=false``); published ports go through docker-proxy, and the engine adds
just what its containers need to reach package indexes during builds (faas-cli's included): one
MASQUERADE rule for its subnet, FORWARD rules for its bridge, and ``ip_forward`` on, each marked
with the bridge's name and removed (``ip_forward`` set back) when it stops, as is the bridge.
Engines of several stacks (tests in parallel, a user's docker0) never step on each other.
"""

from __future__ import annotations

import contextlib
import hashlib
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
    """Where our own engine keeps its sockets, state, data and logs."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def docker_socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def bridge_name(self) -> str:
        """An interface name (at most 15 characters) of this engine's own bridge."""
        return "f2d" + hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:8]  # noqa: S324

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
        self._make_bridge()
        self._open_egress()
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
                "--bridge",
                files.bridge_name,
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
            files.log("dockerd"),
            pid_path=files.pid("dockerd"),
        ).start()
        dockerd.wait_ready(lambda: self.answers(f"unix://{files.docker_socket}"), timeout)
        logger.info("started our own Docker engine on unix://%s", files.docker_socket)

    def _make_bridge(self) -> None:
        """This engine's bridge with the first free 10.213.<n>.1/24 (n from the name's hash)."""
        name = self.files.bridge_name
        if Path(f"/sys/class/net/{name}").exists():
            return
        taken = subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
        ).stdout
        start = int(name[3:], 16) % 250
        for step in range(250):
            third = (start + step) % 250
            if f" 10.213.{third}." not in taken:
                break
        else:
            raise ProcessError("no free 10.213.<n>.0/24 for the engine's bridge")
        for argv in (
            ["ip", "link", "add", "name", name, "type", "bridge"],
            ["ip", "addr", "add", f"10.213.{third}.1/24", "dev", name],
            ["ip", "link", "set", name, "up"],
        ):
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ProcessError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def _egress_rules(self) -> list[list[str]]:
        """The iptables rules (table, chain, rule) giving this engine's containers the outside."""
        name = self.files.bridge_name
        subnet = self._subnet()
        mark = ["-m", "comment", "--comment", f"f2pipe-{name}"]
        return [
            ["-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", name, "-j", "MASQUERADE", *mark],
            ["-t", "filter", "FORWARD", "-i", name, "-j", "ACCEPT", *mark],
            ["-t", "filter", "FORWARD", "-o", name, "-m", "conntrack", "--ctstate",
             "RELATED,ESTABLISHED", "-j", "ACCEPT", *mark],
        ]  # fmt: skip

    def _subnet(self) -> str:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", self.files.bridge_name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        address = shown[shown.index("inet") + 1]
        return str(ipaddress.ip_interface(address).network)

    def _open_egress(self) -> None:
        if shutil.which("iptables") is None:
            logger.warning("iptables not installed: containers of our engine reach no network")
            return
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        saved = self.files.root / "ip_forward.before"
        if not saved.exists():
            saved.write_text(forward.read_text())
        forward.write_text("1\n")
        for table, chain, *rule in ([r[1], r[2], *r[3:]] for r in self._egress_rules()):
            exists = subprocess.run(
                ["iptables", "-t", table, "-C", chain, *rule], capture_output=True, check=False
            )
            if exists.returncode != 0:
                subprocess.run(["iptables", "-t", table, "-I", chain, *rule], check=True)

    def _close_egress(self) -> None:
        if (
            shutil.which("iptables") is not None
            and Path(f"/sys/class/net/{self.files.bridge_name}").exists()
        ):
            for table, chain, *rule in ([r[1], r[2], *r[3:]] for r in self._egress_rules()):
                while (
                    subprocess.run(
                        ["iptables", "-t", table, "-D", chain, *rule],
                        capture_output=True,
                        check=False,
                    ).returncode
                    == 0
                ):
                    pass
        saved = self.files.root / "ip_forward.before"
        if saved.exists():
            Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
            saved.unlink()

    def running(self) -> bool:
        """Our own engine's processes are alive (always False for the user's engine)."""
        try:
            pid = int(self.files.pid("dockerd").read_text().strip())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def stop(self) -> None:
        """Stop our own engine (never the user's); remove its rules and its bridge."""
        files = self.files
        stopped = stop_pidfile(files.pid("dockerd"), timeout=30)
        stop_pidfile(files.pid("containerd"), timeout=15)
        self._close_egress()
        if Path(f"/sys/class/net/{files.bridge_name}").exists():
            subprocess.run(["ip", "link", "delete", files.bridge_name], check=False)
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
