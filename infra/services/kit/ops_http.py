"""Operations endpoint of long-running services: ``/metrics``, ``/healthz`` and ``/livez``.

``/healthz`` is the service's verdict now (readiness: Kafka or the broker may be away).
``/livez`` is what a supervisor restarts on (Kubernetes' liveness probe, Docker's health check,
the local runtime's watchdog): 503 only once ``/healthz`` has been failing for longer than the
liveness grace, so that a dependency coming back by itself costs no restart while a part that
stays broken (a client that stopped working) is restarted within a bounded time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, Mapping[str, Any]]]
# Unhealthy for this long, a service asks to be restarted (F2_LIVENESS_GRACE_SECONDS): longer
# than the bridge needs to rebuild a producer after a delivery timeout (30 s + 15 s).
DEFAULT_LIVENESS_GRACE_S = 120.0


class Liveness:
    """Follows a health check over time: since when it has been failing, if it is."""

    def __init__(
        self, health: HealthCheck, grace_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._health = health
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        """The health check's verdict (a check that raises is unhealthy), remembered."""
        try:
            healthy, details = self._health()
        except Exception as exc:  # a failing check is an unhealthy verdict, not a crash
            healthy, details = False, {"error": type(exc).__name__}
        with self._lock:
            if healthy:
                self._failing_since = None
            elif self._failing_since is None:
                self._failing_since = self._clock()
        return healthy, details

    def alive(self) -> tuple[bool, Mapping[str, Any]]:
        """Alive unless the health check has been failing for ``grace_s`` or longer."""
        healthy, details = self.health()
        if healthy:
            return True, {"healthy": True}
        with self._lock:
            since = self._failing_since
        failing = self._clock() - since if since is not None else 0.0
        verdict = {"healthy": False, "unhealthy_for_s": round(failing, 1), "grace_s": self.grace_s}
        return failing < self.grace_s, {**verdict, **details}


class OpsServer:
    """Serves a registry's metrics and a health verdict on ``host:port`` from a daemon thread.

    ``health`` returns ``(healthy, details)``; ``/healthz`` answers 200 or 503 with the
    details as JSON, ``/livez`` 503 once unhealthy for ``liveness_grace_s``. Port 0 binds any
    free port; ``port`` tells which after ``start()``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: HealthCheck,
        liveness_grace_s: float = DEFAULT_LIVENESS_GRACE_S,
    ) -> None:
        self.host = host
        self.port = port
        self._registry = registry
        self._health = Liveness(health, liveness_grace_s)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OpsServer:
        handler = _handler_class(self._registry, self._health)
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"ops-http-{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("ops endpoint on http://%s:%d (/metrics, /healthz, /livez)", self.host,
                    self.port)  # fmt: skip
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler_class(registry: CollectorRegistry, liveness: Liveness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                healthy, details = liveness.health()
                body = json.dumps({"healthy": healthy, **details}, default=str).encode()
                self._reply(200 if healthy else 503, "application/json", body)
            elif path == "/livez":
                alive, details = liveness.alive()
                body = json.dumps({"alive": alive, **details}, default=str).encode()
                self._reply(200 if alive else 503, "application/json", body)
            else:
                self._reply(404, "text/plain", b"not found\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("ops http: " + format, *args)

    return Handler
