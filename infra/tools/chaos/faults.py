"""Faults on a running LocalStack: which process is a part, kill -9 and pause it, see it back."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from f2lib.errors import ChaosError
from infra.local.process import pid_alive
from infra.local.stack import LocalStack
from infra.tools.chaos.scenarios import Fault

logger = logging.getLogger(__name__)
REPLICATED = ("decode", "sink")  # a function's replicas: restarted by the gateway


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def reap(pid: int) -> None:
    """Collect a killed child of this process (the stack's parts are, when the harness started
    them): unreaped, it stays a zombie whose pid PostgreSQL's lock file still names as alive,
    and the new postmaster refuses to start. Started by ``make up``, init collects them."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class Applied:
    """A fault done: to which process, when (monotonic), and when the part was back."""

    fault: Fault
    pid_path: Path
    pid: int
    done_at: float
    back_at: float | None = None
    siblings: frozenset[int] = frozenset()  # a function's replicas alive when one was killed


class FaultInjector:
    """Finds a part's process on ``stack`` and signals its process group."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack

    def pid_path(self, part: str) -> Path:
        if part in ("decode", "sink"):
            return self._replica_pid_path(part)
        if part.startswith("kafka-") and part.split("-", 1)[1] in ("controller", "follower"):
            node = self._kafka_node(controller=part.endswith("controller"))
            return self.stack.pid_path(self.stack.kafka_part(node))
        return self.stack.pid_path(part)

    def _replica_pid_path(self, function: str) -> Path:
        """The pid file of the function's first live replica (the gateway keeps one each)."""
        for path, _ in self._replicas(function):
            return path
        raise ChaosError(f"no live replica of {function} in the gateway's pid files")

    def _replicas(self, function: str) -> list[tuple[Path, int]]:
        folder = self.stack.state_dir / "gateway" / "pids"
        found = []
        for path in sorted(folder.glob(f"{function}-*.pid")):
            pid = read_pid(path)
            if pid is not None and pid_alive(pid):
                found.append((path, pid))
        return found

    def _kafka_node(self, *, controller: bool) -> int:
        """The node id of the active KRaft controller, or of a node that is not it."""
        leader = self.quorum_leader()
        nodes = list(range(1, self.stack.config.kafka_brokers + 1))
        if controller:
            return leader
        others = [n for n in nodes if n != leader]
        if not others:
            raise ChaosError("one Kafka node: it is the controller, there is no other broker")
        return others[-1]

    def quorum_leader(self) -> int:
        """The KRaft quorum's leader id, from Kafka's own metadata-quorum tool."""
        kafka = self.stack.kafka()
        argv = kafka.tool_argv(
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server",
            self.stack.kafka_bootstrap,
            "describe",
            "--status",
        )
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        for line in result.stdout.splitlines():
            if line.strip().startswith("LeaderId:"):
                return int(line.split(":", 1)[1])
        raise ChaosError(f"no LeaderId in the quorum's status: {result.stdout}{result.stderr}")

    def apply(self, fault: Fault, path: Path | None = None) -> Applied:
        """Signal the part (at ``path``, its pid file found beforehand, or found now)."""
        path = path or self.pid_path(fault.part)
        pid = read_pid(path)
        if pid is None or not pid_alive(pid):
            raise ChaosError(f"{fault.part} is not running (pid file {path})")
        siblings: frozenset[int] = frozenset()
        if fault.part in REPLICATED:
            siblings = frozenset(p for _, p in self._replicas(fault.part))
        signum = signal.SIGKILL if fault.action == "kill" else signal.SIGSTOP
        os.killpg(os.getpgid(pid), signum)
        if fault.action == "kill":
            reap(pid)
        logger.info("%s: pid %d (%s)", fault.describe(), pid, path.name)
        return Applied(fault, path, pid, time.monotonic(), siblings=siblings)

    def resume(self, applied: Applied) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(applied.pid), signal.SIGCONT)
        applied.back_at = time.monotonic()
        logger.info("continued %s (pid %d)", applied.fault.part, applied.pid)

    def check_back(self, applied: Applied) -> bool:
        """True once a killed part runs again (another pid in its pid file) or a paused one
        was continued; notes when."""
        if applied.back_at is not None:
            return True
        if applied.fault.part in REPLICATED:  # the gateway starts a replica of a new number
            fresh = [p for _, p in self._replicas(applied.fault.part) if p not in applied.siblings]
            if fresh:
                applied.back_at = time.monotonic()
            return bool(fresh)
        pid = read_pid(applied.pid_path)
        moved = applied.fault.action == "kill" and pid is not None and pid != applied.pid
        if moved and pid is not None and pid_alive(pid):
            applied.back_at = time.monotonic()
            return True
        return False
