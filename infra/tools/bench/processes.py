"""The stack's long-running processes, found through /proc, and their memory over time.

Groups: bridge, connector, gateway, one per function replica (``decode#0``...), kafka,
mosquitto and postgres (the postmaster and its backends). Memory is VmRSS summed over a
group's processes, and PSS (proportional set size, from ``smaps_rollup``) beside it: for
PostgreSQL the backends share ``shared_buffers``, which RSS would count once per backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

PROC = Path("/proc")
SINGLE_PARTS = ("bridge", "connector", "gateway", "kafka", "mosquitto", "autoscaler", "prometheus")


def parent_pids() -> dict[int, int]:
    """pid -> ppid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int, parents: Mapping[int, int]) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...)."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    stack = list(children.get(pid, ()))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, ()))
    return sorted(found)


def environ_value(pid: int, name: str) -> str | None:
    """One variable of a process's environment, None when unreadable or absent."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stack_groups(pid_path: Callable[[str], Path]) -> dict[str, list[int]]:
    """The stack's process groups by name; ``pid_path(part)`` is LocalStack.pid_path."""
    parents = parent_pids()
    groups: dict[str, list[int]] = {}
    for part in SINGLE_PARTS:
        pid = read_pid(pid_path(part))
        if pid is not None and pid in parents:
            groups[part] = [pid]
    for index in range(1, 9):  # bridges the bench added (bridge-1.pid ...): bridge#1 ...
        pid = read_pid(pid_path(f"bridge-{index}"))
        if pid is not None and pid in parents:
            groups[f"bridge#{index}"] = [pid]
    postmaster = read_pid(pid_path("postgres"))
    if postmaster is not None and postmaster in parents:
        groups["postgres"] = [postmaster, *descendants(postmaster, parents)]
    gateway = groups.get("gateway")
    if gateway:
        counters: dict[str, int] = {}
        for pid in descendants(gateway[0], parents):
            function = environ_value(pid, "F2_FUNCTION_NAME")
            if function is None or parents.get(pid) != gateway[0]:
                continue  # a replica's own children (of-watchdog's process) join it below
            index = counters.get(function, 0)
            counters[function] = index + 1
            groups[f"{function}#{index}"] = [pid, *descendants(pid, parents)]
    return groups


def memory_kib(pid: int) -> tuple[int, int, int]:
    """(RSS, anonymous RSS, PSS) of one process in KiB; zeros when it is gone.

    Anonymous memory is the process's own heap, where an unbounded queue would show; RSS also
    counts mapped files and shared memory (PostgreSQL's shared_buffers, touched page by page
    as the table grows: a bounded cache).
    """
    rss = anon = pss = 0
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
                break
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
                break
    return rss, anon, pss


@dataclass
class MemorySeries:
    """Samples of one group: (time.time(), RSS, anonymous RSS, PSS in KiB, processes)."""

    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)

    def rss(self) -> list[tuple[float, float]]:
        return [(at, float(rss)) for at, rss, _, _, _ in self.samples]

    def anon(self) -> list[tuple[float, float]]:
        return [(at, float(anon)) for at, _, anon, _, _ in self.samples]

    def pss(self) -> list[tuple[float, float]]:
        return [(at, float(pss)) for at, _, _, pss, _ in self.samples]


class MemorySampler:
    """Samples every group's memory in a thread; groups are rediscovered every second."""

    def __init__(self, pid_path: Callable[[str], Path], interval_s: float = 0.25) -> None:
        self._pid_path = pid_path
        self._interval = interval_s
        self.series: dict[str, MemorySeries] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        groups: dict[str, list[int]] = {}
        next_discovery = 0.0
        while not self._stop.is_set():
            now = time.time()
            if now >= next_discovery:
                groups = stack_groups(self._pid_path)
                next_discovery = now + 1.0
            for name, pids in groups.items():
                rss = anon = pss = alive = 0
                for pid in pids:
                    one_rss, one_anon, one_pss = memory_kib(pid)
                    rss, anon, pss = rss + one_rss, anon + one_anon, pss + one_pss
                    alive += 1 if one_rss else 0
                sample = (now, rss, anon, pss, alive)
                self.series.setdefault(name, MemorySeries()).samples.append(sample)
            self._stop.wait(self._interval)


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of a process and of its reaped children (0 when it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])


class CpuByGroup:
    """CPU seconds each group of the stack used between ``start()`` and ``stop()``."""

    def __init__(self, pid_path: Callable[[str], Path]) -> None:
        self._pid_path = pid_path
        self._start: dict[int, int] = {}

    def _ticks(self) -> tuple[dict[str, list[int]], dict[int, int]]:
        groups = stack_groups(self._pid_path)
        return groups, {pid: cpu_ticks(pid) for pids in groups.values() for pid in pids}

    def start(self) -> CpuByGroup:
        _, self._start = self._ticks()
        return self

    def stop(self) -> dict[str, float]:
        groups, ticks = self._ticks()
        hertz = os.sysconf("SC_CLK_TCK")
        return {
            name: sum(ticks[pid] - self._start.get(pid, 0) for pid in pids) / hertz
            for name, pids in sorted(groups.items())
        }
