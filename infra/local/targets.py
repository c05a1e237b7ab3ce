"""Prometheus file-based service discovery: the list of function replicas to scrape.

The local gateway writes one target group per replica (``function`` and ``replica`` labels)
whenever replicas start or stop; Prometheus re-reads the file and scrapes each replica's
``/_/metrics``. Writes are atomic (temporary file, then rename), as file-SD expects.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ReplicaTarget:
    """One replica of a function serving ``/_/metrics`` on ``host:port``."""

    function: str
    replica: int
    port: int
    host: str = "127.0.0.1"


def target_groups(replicas: Iterable[ReplicaTarget]) -> list[dict[str, Any]]:
    """File-SD target groups, one per replica, in a stable order."""
    ordered = sorted(replicas, key=lambda r: (r.function, r.replica))
    return [
        {
            "targets": [f"{r.host}:{r.port}"],
            "labels": {"function": r.function, "replica": str(r.replica)},
        }
        for r in ordered
    ]


def write_targets(path: Path, replicas: Iterable[ReplicaTarget]) -> None:
    """Replace ``path`` with the target groups of ``replicas`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(target_groups(replicas), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_targets(path: Path) -> list[ReplicaTarget]:
    """The replicas listed in a file-SD file (for ``make health`` and tests)."""
    try:
        groups = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    found = []
    for group in groups if isinstance(groups, list) else []:
        labels = group.get("labels") or {}
        for target in group.get("targets") or []:
            host, _, port = str(target).rpartition(":")
            found.append(
                ReplicaTarget(
                    str(labels.get("function", "")), int(labels.get("replica", 0)), int(port), host
                )
            )
    return found
