"""A local gateway speaking the subset of the OpenFaaS gateway REST API that f2pipe uses.

Routes: ``/function/<name>[/<path>]`` (load-balanced over the function's replicas),
``GET /system/functions``, ``GET /system/function/<name>``, ``POST /system/scale-function/<name>``,
``POST|PUT|DELETE /system/functions`` (deploy from a shrinkwrapped build folder),
``GET /healthz`` and ``GET /metrics``. ``/system/*`` needs basic auth, as in OpenFaaS.
Each replica is one process running the template's entrypoint (``python index.py``), or the
real of-watchdog in front of it for at most one replica (its metrics port 8081 is fixed).
``main`` reads the environment once (:class:`~infra.local.settings.RuntimeConfig`); a replica's
environment is built from it, stack.yml and ``--env-file``, never inherited whole.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import SecretStr
from waitress import serve

from f2lib.errors import ProcessError, ReplicaError
from f2lib.secrets import SecretStore
from infra.deploy.stackfile import FunctionSpec, StackFile
from infra.local.ports import free_port, port_open
from infra.local.process import ManagedProcess
from infra.local.settings import RuntimeConfig
from infra.local.targets import ReplicaTarget, write_targets

logger = logging.getLogger(__name__)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
MAX_LOCAL_REPLICAS = 20


@dataclass
class GatewayConfig:
    """Where the gateway finds functions and what it gives them."""

    build_dir: Path
    state_dir: Path
    secrets_dir: Path
    auth_user: str
    auth_password: SecretStr
    env_overrides: dict[str, dict[str, str]]
    watchdog_bin: Path | None = None
    watchdog_function: str | None = None
    targets_file: Path | None = None  # Prometheus file-SD list of replicas (/_/metrics)
    python: str = sys.executable
    # What every replica inherits (PATH, locale, HOME: RuntimeConfig.replica_env()).
    replica_env: dict[str, str] = field(default_factory=dict)


class Metrics:
    """The gateway's Prometheus series, named as OpenFaaS names them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "gateway_function_invocation_total",
            "Function invocations by status code",
            ["function_name", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_functions_seconds",
            "Function invocation duration",
            ["function_name", "code"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.replicas = Gauge(
            "gateway_service_count",
            "Running replicas per function",
            ["function_name"],
            registry=self.registry,
        )


class Replica:
    """One process serving a function on a loopback port."""

    def __init__(self, pool: FunctionPool, index: int, use_watchdog: bool) -> None:
        self.pool = pool
        self.index = index
        self.port = free_port()
        self.ready = False
        cfg = pool.config
        env = pool.environment()
        log_path = cfg.state_dir / "logs" / f"{pool.spec.name}-{index}.log"
        argv: list[str]
        if use_watchdog and cfg.watchdog_bin is not None:
            upstream = free_port()
            env.update(
                {
                    "port": str(self.port),
                    "mode": "http",
                    "fprocess": f"{cfg.python} index.py",
                    "upstream_url": f"http://127.0.0.1:{upstream}",
                    "ready_path": "/_/ready",
                    "F2_UPSTREAM_PORT": str(upstream),
                    "prefix_logs": "false",
                }
            )
            env.setdefault("exec_timeout", "60s")
            env.setdefault("write_timeout", "65s")
            env.setdefault("read_timeout", "65s")
            argv = [str(cfg.watchdog_bin)]
        else:
            env["F2_UPSTREAM_PORT"] = str(self.port)
            argv = [cfg.python, "index.py"]
        self.watchdog = use_watchdog and cfg.watchdog_bin is not None
        self.process = ManagedProcess(
            f"{pool.spec.name}-{index}", argv, log_path, env=env, cwd=pool.context
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        ready_path = "/_/ready"
        http = self.pool.http

        def check() -> bool:
            if not port_open(self.port):
                return False
            resp = http.request("GET", self.url + ready_path, timeout=2.0, retries=False)
            return int(resp.status) == 200

        self.process.wait_ready(check, timeout=timeout)
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.process.stop(timeout=20)


class FunctionPool:
    """The replicas of one function, started from its build folder."""

    def __init__(
        self, spec: FunctionSpec, config: GatewayConfig, http: urllib3.PoolManager, metrics: Metrics
    ) -> None:
        self.spec = spec
        self.config = config
        self.http = http
        self.metrics = metrics
        self.context = config.build_dir / spec.name
        self.replicas: list[Replica] = []
        self.desired = 0
        self._counter = itertools.count()
        self._rr = itertools.count()
        self._lock = threading.RLock()
        if not (self.context / "index.py").is_file():
            raise ReplicaError(
                f"no build folder for {spec.name!r} at {self.context}; build it first"
            )

    def secrets_dir(self) -> Path:
        """Only the secrets the function names, as OpenFaaS mounts them."""
        target = self.config.state_dir / "secrets" / self.spec.name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, mode=0o700)
        for name in self.spec.secrets:
            source = self.config.secrets_dir / name
            if source.is_file():
                shutil.copyfile(source, target / name)
                (target / name).chmod(0o600)
            else:
                logger.warning(
                    "function %s: secret %s not found in %s",
                    self.spec.name,
                    name,
                    self.config.secrets_dir,
                )
        return target

    def environment(self) -> dict[str, str]:
        env = dict(self.config.replica_env)
        env.update(self.spec.environment)
        env.update(self.config.env_overrides.get("*", {}))
        env.update(self.config.env_overrides.get(self.spec.name, {}))
        env["F2_SECRETS_DIR"] = str(self.config.state_dir / "secrets" / self.spec.name)
        env["PYTHONUNBUFFERED"] = "1"
        env["F2_FUNCTION_NAME"] = self.spec.name
        return env

    def scale(self, replicas: int) -> None:
        """Start or stop processes until ``replicas`` are running."""
        replicas = max(0, min(replicas, MAX_LOCAL_REPLICAS))
        with self._lock:
            self.desired = replicas
            if not self.replicas:
                self.secrets_dir()
            while len(self.replicas) < replicas:
                index = next(self._counter)
                use_watchdog = self.config.watchdog_function == self.spec.name and index == 0
                replica = Replica(self, index, use_watchdog)
                self.replicas.append(replica)
                try:
                    replica.start()
                except ProcessError:
                    self.replicas.remove(replica)
                    replica.stop()
                    raise
            while len(self.replicas) > replicas:
                self.replicas.pop().stop()
            self.metrics.replicas.labels(self.spec.name).set(len(self.replicas))

    def available(self) -> int:
        return sum(1 for r in self.replicas if r.ready and r.process.alive())

    def pick(self) -> Replica:
        ready = [r for r in list(self.replicas) if r.ready and r.process.alive()]
        if not ready:
            raise ReplicaError(f"no ready replica of {self.spec.name!r}")
        return ready[next(self._rr) % len(ready)]

    def supervise(self) -> None:
        """Restart replicas whose process died."""
        with self._lock:
            for i, replica in enumerate(list(self.replicas)):
                if replica.ready and not replica.process.alive():
                    logger.warning(
                        "replica %s of %s died; restarting", replica.index, self.spec.name
                    )
                    replica.stop()
                    fresh = Replica(self, next(self._counter), replica.watchdog)
                    self.replicas[i] = fresh
                    try:
                        fresh.start()
                    except ProcessError as exc:
                        logger.error("restart of %s failed: %s", self.spec.name, exc)

    def stop(self) -> None:
        with self._lock:
            while self.replicas:
                self.replicas.pop().stop()
            self.metrics.replicas.labels(self.spec.name).set(0)


def _timeout_seconds(spec: FunctionSpec) -> float:
    raw = spec.environment.get("exec_timeout", "60s").strip()
    try:
        return float(raw.rstrip("s")) + 5.0
    except ValueError:
        return 65.0


class Gateway:
    """Functions by name, and the Flask app that serves the OpenFaaS API subset."""

    def __init__(self, config: GatewayConfig, specs: Mapping[str, FunctionSpec]) -> None:
        self.config = config
        self.metrics = Metrics()
        self.http = urllib3.PoolManager(num_pools=64, maxsize=64, block=False)
        self.pools: dict[str, FunctionPool] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._published: list[ReplicaTarget] | None = None
        self.specs = dict(specs)
        self.app = self._build_app()

    def start_functions(self) -> None:
        for spec in self.specs.values():
            pool = FunctionPool(spec, self.config, self.http, self.metrics)
            self.pools[spec.name] = pool
            pool.scale(spec.min_replicas)
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def _supervise(self) -> None:
        self.publish_targets()
        while not self._stopping.wait(2.0):
            for pool in list(self.pools.values()):
                pool.supervise()
            self.publish_targets()

    def publish_targets(self) -> None:
        """Write the ready replicas to the file-SD list when they changed."""
        if self.config.targets_file is None:
            return
        targets = [
            ReplicaTarget(name, r.index, r.port)
            for name, pool in sorted(self.pools.items())
            for r in list(pool.replicas)
            if r.ready
        ]
        if targets != self._published:
            write_targets(self.config.targets_file, targets)
            self._published = targets

    def stop(self) -> None:
        self._stopping.set()
        for pool in list(self.pools.values()):
            pool.stop()
        self.publish_targets()

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.config.auth_user) and hmac.compare_digest(
            password, self.config.auth_password.get_secret_value()
        )

    def describe(self, name: str) -> dict[str, Any]:
        pool = self.pools[name]
        return pool.spec.describe(replicas=pool.desired, available=pool.available())

    def invoke(self, name: str, path: str) -> Response:
        pool = self.pools.get(name)
        if pool is None:
            return Response(f"function {name} not found\n", status=404)
        started = time.monotonic()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote_addr or ""
        headers["X-Call-Id"] = request.headers.get("X-Call-Id") or os.urandom(8).hex()
        url_path = "/" + path
        if request.query_string:
            url_path += "?" + request.query_string.decode()
        body = request.get_data()
        last_error = ""
        for _attempt in range(2):
            try:
                replica = pool.pick()
            except ReplicaError as exc:
                last_error = str(exc)
                break
            try:
                resp = self.http.request(
                    request.method,
                    replica.url + url_path,
                    body=body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=2.0, read=_timeout_seconds(pool.spec)),
                    retries=False,
                    preload_content=True,
                    redirect=False,
                )
            except urllib3.exceptions.NewConnectionError as exc:
                last_error = f"replica unreachable: {exc}"
                continue
            except urllib3.exceptions.HTTPError as exc:
                last_error = f"upstream error: {type(exc).__name__}"
                break
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            out_headers["X-Duration-Seconds"] = f"{time.monotonic() - started:.6f}"
            code = str(resp.status)
            self.metrics.invocations.labels(name, code).inc()
            self.metrics.duration.labels(name, code).observe(time.monotonic() - started)
            return Response(resp.data, status=resp.status, headers=out_headers)
        self.metrics.invocations.labels(name, "502").inc()
        logger.warning("invoke %s failed: %s", name, last_error)
        return Response(f"cannot reach function {name}: {last_error}\n", status=502)

    def deploy(self, body: Mapping[str, Any], replace: bool) -> Response:
        name = str(body.get("service") or "")
        if not name:
            return Response("service is required\n", status=400)
        base = self.specs.get(name)
        spec = FunctionSpec(
            name=name,
            lang=base.lang if base else "python3-http-f2",
            handler=base.handler if base else f"./functions/{name}",
            image=str(body.get("image") or (base.image if base else name)),
            labels={str(k): str(v) for k, v in (body.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (body.get("annotations") or {}).items()},
            environment={str(k): str(v) for k, v in (body.get("envVars") or {}).items()},
            secrets=tuple(str(s) for s in body.get("secrets") or ()),
        )
        try:
            pool = FunctionPool(spec, self.config, self.http, self.metrics)
        except ReplicaError as exc:
            return Response(f"{exc}\n", status=400)
        with self._lock:
            old = self.pools.get(name)
            replicas = max(spec.min_replicas, old.desired if old else 0, 1)
            if old is not None:
                old.stop()
            self.specs[name] = spec
            self.pools[name] = pool
        try:
            pool.scale(replicas)
        except ProcessError as exc:
            logger.error("deploy of %s failed: %s", name, exc)
            return Response(f"function {name} failed to start\n", status=500)
        return Response("", status=202 if replace else 200)

    def remove(self, name: str) -> Response:
        with self._lock:
            pool = self.pools.pop(name, None)
            self.specs.pop(name, None)
        if pool is None:
            return Response(f"function {name} not found\n", status=404)
        pool.stop()
        return Response("", status=202)

    def _build_app(self) -> Flask:
        app = Flask("f2pipe-gateway")
        app.url_map.strict_slashes = False

        @app.before_request
        def require_auth() -> Response | None:
            if request.path.startswith("/system/") and not self._authorized():
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
            return Response(generate_latest(self.metrics.registry), mimetype=CONTENT_TYPE_LATEST)

        @app.get("/system/functions")
        def list_functions() -> Response:
            return Response(
                json.dumps([self.describe(n) for n in sorted(self.pools)]),
                mimetype="application/json",
            )

        @app.get("/system/function/<name>")
        def get_function(name: str) -> Response:
            if name not in self.pools:
                return Response(f"function {name} not found\n", status=404)
            return Response(json.dumps(self.describe(name)), mimetype="application/json")

        @app.post("/system/scale-function/<name>")
        def scale_function(name: str) -> Response:
            pool = self.pools.get(name)
            if pool is None:
                return Response(f"function {name} not found\n", status=404)
            try:
                body = json.loads(request.get_data() or b"{}")
                replicas = int(body["replicas"])
            except (ValueError, KeyError, TypeError):
                return Response('body must be {"serviceName", "replicas": <int>}\n', status=400)
            if replicas < 0:
                return Response("replicas must be >= 0\n", status=400)
            threading.Thread(
                target=self._scale_quietly, args=(pool, replicas), name=f"scale-{name}", daemon=True
            ).start()
            return Response("", status=202)

        @app.route("/system/functions", methods=["POST", "PUT"])
        def deploy_function() -> Response:
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                return Response("body must be JSON\n", status=400)
            if not isinstance(body, dict):
                return Response("body must be a JSON object\n", status=400)
            return self.deploy(body, replace=request.method == "PUT")

        @app.delete("/system/functions")
        def delete_function() -> Response:
            try:
                body = json.loads(request.get_data() or b"{}")
                name = str(body["functionName"])
            except (ValueError, KeyError, TypeError):
                return Response('body must be {"functionName": <name>}\n', status=400)
            return self.remove(name)

        @app.route(
            "/function/<name>",
            defaults={"path": ""},
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
        @app.route(
            "/function/<name>/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
        )
        def function(name: str, path: str) -> Response:
            return self.invoke(name, path)

        return app

    def _scale_quietly(self, pool: FunctionPool, replicas: int) -> None:
        try:
            pool.scale(replicas)
            logger.info("scaled %s to %d replicas", pool.spec.name, replicas)
        except ProcessError as exc:
            logger.error("scaling %s to %d failed: %s", pool.spec.name, replicas, exc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--state-dir", type=Path, default=Path(".state/gateway"))
    parser.add_argument(
        "--secrets-dir",
        type=Path,
        required=True,
        help="folder of secret files; basic-auth-user/-password guard /system",
    )
    parser.add_argument("--env-file", type=Path, help="JSON {fn or '*': {VAR: value}} overrides")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--watchdog-bin", type=Path, default=None)
    parser.add_argument(
        "--targets-file",
        type=Path,
        default=None,
        help="write the replicas as a Prometheus file-SD list here",
    )
    parser.add_argument(
        "--watchdog-function",
        default=None,
        help="serve this function's first replica through of-watchdog",
    )
    args = parser.parse_args(argv)
    runtime = RuntimeConfig()
    logging.basicConfig(
        level=(runtime.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stack = StackFile.load(args.stack)
    overrides = json.loads(args.env_file.read_text()) if args.env_file else {}
    secrets = SecretStore(args.secrets_dir)
    config = GatewayConfig(
        build_dir=args.build_dir.resolve(),
        state_dir=args.state_dir.resolve(),
        secrets_dir=args.secrets_dir.resolve(),
        auth_user=secrets.get("basic-auth-user").get_secret_value(),
        auth_password=secrets.get("basic-auth-password"),
        env_overrides=overrides,
        watchdog_bin=args.watchdog_bin,
        watchdog_function=args.watchdog_function,
        targets_file=args.targets_file,
        replica_env=runtime.replica_env(),
    )
    gateway = Gateway(config, stack.functions)

    def shutdown(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping functions", signum)
        gateway.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    gateway.start_functions()
    logger.info("gateway listening on %s:%d", args.host, args.port)
    serve(
        gateway.app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident=None,
        connection_limit=512,
        channel_timeout=120,
    )


if __name__ == "__main__":
    main()
