"""``/system/logs``: a function's replica logs as the JSON lines ``faas-cli logs`` reads.

Every line is ``{"name", "namespace", "instance", "timestamp", "text"}``. Without ``follow``
the answer ends after the last ``tail`` lines; with it, new lines are sent as they are written
until the caller goes away.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

NAMESPACE = "openfaas-fn"
POLL_S = 0.5
HEARTBEAT_S = 5.0


@dataclass(frozen=True, slots=True)
class LogSource:
    """One replica's log file."""

    instance: str
    path: Path


def _line(function: str, instance: str, text: str, at: float) -> str:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    message = {
        "name": function,
        "namespace": NAMESPACE,
        "instance": instance,
        "timestamp": stamp,
        "text": text,
    }
    return json.dumps(message) + "\n"


def stream(
    function: str,
    sources: Callable[[], list[LogSource]],
    *,
    tail: int = -1,
    since: float | None = None,
    follow: bool = False,
    instance: str | None = None,
) -> Iterator[str]:
    """The log lines of ``function``'s replicas (``sources`` is asked again while following)."""
    offsets: dict[Path, int] = {}
    history: list[tuple[float, str, str]] = []
    for source in sources():
        if instance and source.instance != instance:
            continue
        try:
            data = source.path.read_bytes()
            mtime = source.path.stat().st_mtime
        except OSError:
            continue
        offsets[source.path] = len(data)
        if since is not None and mtime < since:
            continue
        for text in data.decode("utf-8", "replace").splitlines():
            history.append((mtime, source.instance, text))
    if tail >= 0:
        history = history[-tail:] if tail else []
    for at, name, text in history:
        yield _line(function, name, text, at)
    if follow and not history:
        yield "\n"  # whitespace between JSON values: sends the headers before the first line
    quiet_since = time.monotonic()
    while follow:
        time.sleep(POLL_S)
        if time.monotonic() - quiet_since > HEARTBEAT_S:
            # A keep-alive: a caller that went away is noticed here and the stream ends.
            yield "\n"
            quiet_since = time.monotonic()
        for source in sources():
            if instance and source.instance != instance:
                continue
            try:
                with source.path.open("rb") as log:
                    log.seek(offsets.get(source.path, 0))
                    chunk = log.read()
            except OSError:
                continue
            if not chunk:
                continue
            complete = chunk.rfind(b"\n") + 1
            if not complete:
                continue
            offsets[source.path] = offsets.get(source.path, 0) + complete
            now = time.time()
            quiet_since = time.monotonic()
            for text in chunk[:complete].decode("utf-8", "replace").splitlines():
                yield _line(function, source.instance, text, now)
