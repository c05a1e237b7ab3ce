"""Entrypoint of the python3-http-f2 template: serves ``function.handler.handle`` over HTTP.

Everything about Flask and waitress stays here; the handler sees only the python3-http
contract: ``handle(event, context)`` returning ``{"statusCode", "body", "headers"}``.
of-watchdog (http mode) proxies to this server on ``upstream_url`` (127.0.0.1:5000).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from waitress import serve

HERE = Path(__file__).resolve().parent
# Shared code named in stack.yml `configuration.copy` lands in function/functions/.
SHARED = HERE / "function" / "functions"
if SHARED.is_dir():
    sys.path.insert(0, str(SHARED))

from function import handler  # noqa: E402  (needs the shared path above)

try:  # f2lib comes with every function through stack.yml `configuration.copy`
    from f2lib.metrics import METRICS_PATH, function_metrics
except ImportError:  # a function built without f2lib serves no metrics
    METRICS_PATH, function_metrics = "/_/metrics", None

logger = logging.getLogger("f2pipe.template")
app = Flask(__name__)
app.url_map.strict_slashes = False


class Event:
    """The request as the handler sees it."""

    def __init__(self) -> None:
        self.body: bytes = request.get_data()
        self.headers = request.headers
        self.method: str = request.method
        self.query = request.args
        self.path: str = request.path


class Context:
    """Where the handler runs."""

    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME", socket.gethostname())


def format_body(body: Any) -> bytes | str:
    if body is None:
        return b""
    if isinstance(body, bytes | str):
        return body
    return json.dumps(body, default=str)


def format_response(result: Any) -> Response:
    if not isinstance(result, dict):
        return Response(format_body(result), status=200)
    headers = dict(result.get("headers") or {})
    body = result.get("body")
    if not isinstance(body, bytes | str | type(None)):
        headers.setdefault("Content-Type", "application/json")
    return Response(format_body(body), status=int(result.get("statusCode", 200)), headers=headers)


@app.route("/_/ready", methods=["GET"])
def ready() -> Response:
    return Response("OK", status=200)


@app.route("/_/health", methods=["GET"])
def health() -> Response:
    """Answered here when no of-watchdog runs in front (of-watchdog answers it otherwise)."""
    return Response("OK", status=200)


@app.route(METRICS_PATH, methods=["GET"])
def metrics() -> Response:
    """This replica's Prometheus series (each replica is scraped on its own)."""
    if function_metrics is None:
        return Response("metrics not available\n", status=404)
    body, content_type = function_metrics().render()
    return Response(body, status=200, headers={"Content-Type": content_type})


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path: str) -> Response:
    started = time.monotonic()
    try:
        result = handler.handle(Event(), Context())
    except Exception:
        # The handler's own errors are its business; never leak their text to the caller.
        logger.exception("handler raised on %s %s", request.method, request.path)
        response = Response(
            json.dumps({"error": "internal error in function handler"}),
            status=500,
            headers={"Content-Type": "application/json"},
        )
    else:
        response = format_response(result)
    if function_metrics is not None:
        function_metrics().observe_invocation(response.status_code, time.monotonic() - started)
    return response


def main() -> None:
    logging.basicConfig(
        level=os.getenv("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    host = os.getenv("F2_UPSTREAM_HOST", "127.0.0.1")
    port = int(os.getenv("F2_UPSTREAM_PORT", "5000"))
    threads = int(os.getenv("F2_WAITRESS_THREADS", "4"))
    logger.info("serving function on %s:%d with %d threads", host, port, threads)
    serve(app, host=host, port=port, threads=threads, ident=None)


if __name__ == "__main__":
    main()
