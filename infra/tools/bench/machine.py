"""Machine facts, versions, and how much CPU others took while the benchmark ran.

A run is only as good as the machine was quiet: besides the load average, every phase records
the CPU time the whole machine spent (``/proc/stat``) minus the time spent by the harness and
the stack's processes (``/proc/<pid>/stat``), as cores used by others (``foreign_cores``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PACKAGES = (
    "paho-mqtt",
    "kafka-python",
    "crc32c",
    "psycopg2-binary",
    "pydantic",
    "waitress",
    "flask",
    "requests",
)
POLLUTED_FOREIGN_CORES = 0.25


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_release(),
    }


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def versions(postgres_dsn: str, kafka_libs_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    found["kafka"] = kafka_version(kafka_libs_dir)
    found["mosquitto"] = _first_match(["mosquitto", "-h"], r"mosquitto version (\S+)")
    try:
        with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
            found["postgresql"] = row[0] if row else None
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            row = cur.fetchone()
            found["timescaledb"] = row[0] if row else None
        conn.close()
    except psycopg2.Error as exc:
        found["postgresql"] = f"unknown ({exc.__class__.__name__})"
    found["java"] = _first_match(["java", "-version"], r'version "([^"]+)"')
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def kafka_version(libs_dir: Path) -> str | None:
    """The broker's version from its jar's name (``kafka_2.13-4.1.1.jar``)."""
    for jar in sorted(libs_dir.glob("kafka_*.jar")):
        match = re.match(r"kafka_[\d.]+-([\d.]+)\.jar$", jar.name)
        if match:
            return match.group(1)
    return None


def _first_match(argv: list[str], pattern: str) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else None


def _busy_ticks() -> int:
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle


def _proc_ticks(pid: int, children: bool) -> int:
    try:
        stat = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # after the comm field: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(stat[11]) + int(stat[12])
    if children:
        ticks += int(stat[13]) + int(stat[14])
    return ticks


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    found, frontier = [root], [root]
    while frontier:
        current = frontier.pop()
        for pid, parent in parents.items():
            if parent == current:
                found.append(pid)
                frontier.append(pid)
    return found


@dataclass
class CpuSnapshot:
    at: float
    busy: int
    ours: dict[int, int]


class CpuAccount:
    """Busy CPU of the machine vs. of the harness's process tree (the stack's parts included:
    they are the harness's children), per phase."""

    def __init__(self) -> None:
        self.root = os.getpid()

    def snapshot(self) -> CpuSnapshot:
        ours = {pid: _proc_ticks(pid, children=True) for pid in _tree(self.root)}
        return CpuSnapshot(time.monotonic(), _busy_ticks(), ours)

    @staticmethod
    def between(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, Any]:
        wall = max(end.at - start.at, 1e-6)
        busy = (end.busy - start.busy) / TICKS
        ours = sum(t - start.ours.get(pid, 0) for pid, t in end.ours.items()) / TICKS
        foreign = max(0.0, busy - ours)
        return {
            "wall_s": round(wall, 2),
            "busy_cores": round(busy / wall, 2),
            "our_cores": round(ours / wall, 2),
            "foreign_cores": round(foreign / wall, 2),
            "loadavg": list(os.getloadavg()),
        }


def polluted(phases: Iterable[dict[str, Any]]) -> bool:
    return any(p.get("foreign_cores", 0.0) > POLLUTED_FOREIGN_CORES for p in phases)


def calibration_ms(rounds: int = 3) -> float:
    """Milliseconds of a fixed pure-Python loop (best of ``rounds``): this machine's speed at
    the moment, to compare runs made while others shared the cores."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i * i % 7
        best = min(best, (time.perf_counter() - started) * 1000)
    return round(best, 1)
