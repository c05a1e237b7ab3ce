"""One status line from a running autoscaler's ``/healthz`` (for ``make health``)."""

from __future__ import annotations

import requests

from f2lib.errors import MonitoringError


def summarize(url: str, timeout: float = 3.0) -> str:
    """``decode 1 (1..5, lag 0/1000 per replica), sink ...``; raises MonitoringError."""
    try:
        resp = requests.get(f"{url.rstrip('/')}/healthz", timeout=timeout)
        body = resp.json()
    except (requests.RequestException, ValueError) as exc:
        raise MonitoringError(f"no answer from {url}: {type(exc).__name__}") from exc
    functions = body.get("functions") or {}
    parts = [
        f"{name} {f['current']}->{f['desired']} ({f['min']}..{f['max']}, "
        f"lag {f['lag']}, target {f['lag_target']}/replica)"
        for name, f in sorted(functions.items())
    ]
    line = ", ".join(parts) or "no lag-scaled function yet"
    if resp.status_code != 200 or not body.get("healthy"):
        age = body.get("last_cycle_age_s")
        raise MonitoringError(f"unhealthy (last good cycle {age}s ago): {line}")
    return line
