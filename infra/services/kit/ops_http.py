"""Operations endpoint of long-running services: ``/metrics`` (Prometheus) and ``/healthz``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, Mapping[str, Any]]]


class OpsServer:
    """Serves a registry's metrics and a health verdict on ``host:port`` from a daemon thread.

    ``health`` returns ``(healthy, details)``; ``/healthz`` answers 200 or 503 with the
    details as JSON. Port 0 binds any free port; ``port`` tells which after ``start()``.
    """

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: HealthCheck
    ) -> None:
        self.host = host
        self.port = port
        self._registry = registry
        self._health = health
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
        logger.info("ops endpoint on http://%s:%d (/metrics, /healthz)", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler_class(
    registry: CollectorRegistry, health: HealthCheck
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                try:
                    healthy, details = health()
                except Exception as exc:  # a failing check is an unhealthy verdict, not a crash
                    healthy, details = False, {"error": type(exc).__name__}
                body = json.dumps({"healthy": healthy, **details}, default=str).encode()
                self._reply(200 if healthy else 503, "application/json", body)
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
