"""The OpenFaaS gateway REST API as faas-cli uses it, over :class:`Gateway`.

``/system/*`` needs basic auth; ``/function/<name>[.<namespace>]``, ``/async-function/<name>``,
``/healthz`` and ``/metrics`` do not, as on OpenFaaS. Shapes follow OpenFaaS's published API
(the faas-provider types faas-cli decodes): the function listing, scale and delete requests,
secrets, namespaces, system info and the log stream.
"""

from __future__ import annotations

import base64
import hmac
import json
import platform
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from f2lib.errors import ConfigError
from infra.local.gateway.asyncq import AsyncCall, AsyncQueue
from infra.local.gateway.core import NAMESPACE, Gateway, Upstream
from infra.local.gateway.logs import LogSource, stream
from infra.local.gateway.secrets import SecretsFolder

PROVIDER = "f2pipe-local"
VERSION = "0.1.0"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


def _text(message: str, status: int) -> Response:
    return Response(message.rstrip("\n") + "\n", status=status, mimetype="text/plain")


def _body() -> dict[str, Any] | None:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _upstream(answer: Upstream) -> Response:
    return Response(answer.body, status=answer.status, headers=answer.headers)


def build_app(
    gateway: Gateway,
    secrets: SecretsFolder,
    auth: tuple[str, SecretStr],
    async_queue: AsyncQueue,
) -> Flask:
    """The Flask app serving the API for ``gateway``."""
    app = Flask("f2pipe-gateway")
    app.url_map.strict_slashes = False
    user, password = auth

    def authorized() -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given_user, _, given = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given_user, user) and hmac.compare_digest(
            given, password.get_secret_value()
        )

    @app.before_request
    def require_auth() -> Response | None:
        if request.path.startswith("/system/") and not authorized():
            return Response(
                "Unauthorized\n",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="Restricted"'},
            )
        return None

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("OK", status=200)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/system/info")
    def info() -> Response:
        version = {"sha": "local", "release": VERSION}
        return _json(
            {
                "provider": {
                    "provider": PROVIDER,
                    "orchestration": gateway.backend.kind,
                    "version": version,
                },
                "version": version,
                "arch": platform.machine(),
            }
        )

    @app.get("/system/namespaces")
    def namespaces() -> Response:
        return _json([NAMESPACE])

    def namespace_known() -> bool:
        return request.args.get("namespace", NAMESPACE) in ("", NAMESPACE)

    @app.get("/system/functions")
    def list_functions() -> Response:
        return _json(gateway.listing() if namespace_known() else [])

    @app.get("/system/function/<name>")
    def get_function(name: str) -> Response:
        if name not in gateway.pools or not namespace_known():
            return _text(f"function {name} not found", 404)
        return _json(gateway.describe(name))

    @app.post("/system/scale-function/<name>")
    def scale_function(name: str) -> Response:
        pool = gateway.pools.get(name)
        if pool is None:
            return _text(f"function {name} not found", 404)
        body = _body()
        try:
            replicas = int((body or {})["replicas"])
        except (KeyError, TypeError, ValueError):
            return _text('body must be {"serviceName", "replicas": <int>}', 400)
        if replicas < 0:
            return _text("replicas must be >= 0", 400)
        gateway.scale(pool, replicas)
        return Response("", status=202)

    @app.route("/system/functions", methods=["POST", "PUT"])
    def deploy_function() -> Response:
        body = _body()
        if body is None:
            return _text("body must be a JSON object", 400)
        status, message = gateway.deploy(body, update=request.method == "PUT")
        return _text(message, status) if message else Response("", status=status)

    @app.delete("/system/functions")
    def delete_function() -> Response:
        body = _body()
        name = str((body or {}).get("functionName") or "")
        if not name:
            return _text('body must be {"functionName": <name>}', 400)
        if not gateway.remove(name):
            return _text(f"function {name} not found", 404)
        return Response("", status=202)

    @app.get("/system/secrets")
    def list_secrets() -> Response:
        return _json([{"name": n, "namespace": NAMESPACE} for n in secrets.names()])

    @app.route("/system/secrets", methods=["POST", "PUT", "DELETE"])
    def change_secret() -> Response:
        body = _body()
        if body is None:
            return _text("body must be a JSON object", 400)
        try:
            name, value = SecretsFolder.parse(body)
        except ConfigError as exc:
            return _text(str(exc), 400)
        if request.method == "DELETE":
            return Response("", 200) if secrets.delete(name) else _text("secret not found", 404)
        if value is None:
            return _text("value or rawValue is required", 400)
        exists = secrets.exists(name)
        if request.method == "POST" and exists:
            return _text(f"secret {name} already exists", 409)
        if request.method == "PUT" and not exists:
            return _text(f"secret {name} not found", 404)
        secrets.write(name, value)
        return Response("", status=201 if request.method == "POST" else 200)

    @app.get("/system/logs")
    def logs() -> Response:
        name = request.args.get("name", "")
        pool = gateway.pools.get(name)
        if pool is None:
            return _text(f"function {name} not found", 404)
        try:
            tail = int(request.args.get("tail", "-1") or -1)
        except ValueError:
            return _text("tail must be an integer", 400)
        since = _since(request.args.get("since"))
        follow = request.args.get("follow", "false").lower() == "true"

        def sources() -> list[LogSource]:
            return [LogSource(r.instance, r.log_path) for r in list(pool.replicas)]

        lines = stream(
            name,
            sources,
            tail=tail,
            since=since,
            follow=follow,
            instance=request.args.get("instance") or None,
        )
        return Response(lines, status=200, mimetype="application/x-ndjson")

    def call(path: str, name: str, handler: Callable[[Any, str], Response]) -> Response:
        pool = gateway.resolve(name)
        if pool is None:
            return _text(f"function {name} not found", 404)
        url_path = "/" + path
        if request.query_string:
            url_path += "?" + request.query_string.decode()
        return handler(pool, url_path)

    def forward_headers() -> dict[str, str]:
        headers = dict(request.headers.items())
        headers["X-Forwarded-For"] = request.remote_addr or ""
        return headers

    @app.route("/function/<name>", defaults={"path": ""}, methods=METHODS)
    @app.route("/function/<name>/<path:path>", methods=METHODS)
    def function(name: str, path: str) -> Response:
        def sync(pool: Any, url_path: str) -> Response:
            answer = gateway.invoke(
                pool, request.method, url_path, request.get_data(), forward_headers()
            )
            return _upstream(answer)

        return call(path, name, sync)

    @app.route("/async-function/<name>", defaults={"path": ""}, methods=METHODS)
    @app.route("/async-function/<name>/<path:path>", methods=METHODS)
    def async_function(name: str, path: str) -> Response:
        def queued(pool: Any, url_path: str) -> Response:
            call_id = async_queue.submit(
                pool.spec.name, request.method, url_path, request.get_data(), forward_headers()
            )
            if call_id is None:
                return _text("the async queue is full", 429)
            return Response("", status=202, headers={"X-Call-Id": call_id})

        return call(path, name, queued)

    return app


def async_invoker(gateway: Gateway) -> Callable[[AsyncCall], Upstream]:
    """How the async queue makes a call: through the same pools as synchronous ones."""

    def invoke(call: AsyncCall) -> Upstream:
        pool = gateway.resolve(call.function)
        if pool is None:
            return Upstream(404, f"function {call.function} not found\n".encode())
        return gateway.invoke(pool, call.method, call.path, call.body, call.headers)

    return invoke


def _since(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
