"""The gateway's state and actions: functions by name, invoke, deploy, scale, remove, supervise.

The HTTP routes (``api.py``) only translate requests to these calls. A deployment that cannot
start (its image missing, its container exiting) keeps its error, which the listing shows, and
never stops the gateway from serving the other functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from f2lib.errors import ReplicaError, StackFileError
from infra.deploy.stackfile import FunctionSpec
from infra.local.gateway.backends import ReplicaBackend
from infra.local.gateway.metrics import GatewayMetrics
from infra.local.gateway.pool import FunctionPool, PoolContext
from infra.local.targets import ReplicaTarget, write_targets

logger = logging.getLogger(__name__)

NAMESPACE = "openfaas-fn"
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


@dataclass(frozen=True, slots=True)
class Upstream:
    """A function's answer as the gateway passes it on."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def timeout_of(spec: FunctionSpec) -> float:
    """The function's ``exec_timeout`` plus a margin (65 s when unset or unreadable)."""
    raw = spec.environment.get("exec_timeout", "60s").strip()
    try:
        return float(raw.rstrip("s")) + 5.0
    except ValueError:
        return 65.0


class Gateway:
    """Functions by name over one replica backend."""

    def __init__(
        self,
        backend: ReplicaBackend,
        specs: Mapping[str, FunctionSpec],
        *,
        secrets_dir: Path,
        state_dir: Path,
        env_overrides: Mapping[str, Mapping[str, str]] | None = None,
        targets_file: Path | None = None,
        metrics: GatewayMetrics | None = None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics or GatewayMetrics()
        self.http = http or urllib3.PoolManager(num_pools=64, maxsize=64, block=False)
        self.specs = dict(specs)
        self.pools: dict[str, FunctionPool] = {}
        self.targets_file = targets_file
        self.started_at = time.time()
        self._context = PoolContext(
            backend=backend,
            secrets_dir=secrets_dir,
            state_dir=state_dir,
            env_overrides=env_overrides or {},
            on_change=self.publish_targets,
        )
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._published: list[ReplicaTarget] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start_functions(self) -> None:
        """Start every stack.yml function at its minimum; one that fails keeps its error."""
        for spec in self.specs.values():
            pool = FunctionPool(spec, self._context)
            self.pools[spec.name] = pool
            try:
                pool.prepare()
                pool.scale(spec.min_replicas)
            except ReplicaError as exc:
                pool.desired = spec.min_replicas
                logger.error("function %s did not start: %s", spec.name, exc)
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def _supervise(self) -> None:
        self.publish_targets()
        while not self._stopping.wait(2.0):
            for pool in list(self.pools.values()):
                try:
                    pool.supervise()
                except Exception:  # the supervisor must outlive any one pool's trouble
                    logger.exception("supervising %s failed", pool.spec.name)
            self.publish_targets()

    def stop(self) -> None:
        self._stopping.set()
        for pool in list(self.pools.values()):
            pool.stop()
        self.backend.close()
        self.publish_targets()

    def refresh_secrets(self, secret: str) -> None:
        """Give the functions that name ``secret`` its new value (their mounts see it)."""
        for pool in list(self.pools.values()):
            if secret in pool.spec.secrets:
                try:
                    pool.prepare()
                except ReplicaError as exc:
                    logger.warning("secrets of %s not refreshed: %s", pool.spec.name, exc)

    def publish_targets(self) -> None:
        """Write the running replicas to the file-SD list when they changed."""
        for name, pool in list(self.pools.items()):
            self.metrics.replicas.labels(name).set(len(pool.replicas))
        if self.targets_file is None:
            return
        targets = [
            ReplicaTarget(name, r.index, r.port)
            for name, pool in sorted(self.pools.items())
            for r in list(pool.replicas)
        ]
        with self._lock:
            if targets != self._published:
                write_targets(self.targets_file, targets)
                self._published = targets

    # -- queries ---------------------------------------------------------------------------

    def describe(self, name: str) -> dict[str, Any]:
        """The function as OpenFaaS's ``GET /system/functions`` lists it, plus f2pipe's status."""
        pool = self.pools[name]
        entry = pool.spec.describe(replicas=pool.desired, available=pool.available())
        entry["invocationCount"] = pool.invocations
        entry["createdAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))
        entry["f2pipe"] = {
            "backend": self.backend.kind,
            "watchdog": self.backend.runs_watchdog(pool.spec),
            "error": pool.error or pool.deploy_error,
            "instances": [r.instance for r in list(pool.replicas)],
        }
        return entry

    def listing(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in sorted(self.pools)]

    def resolve(self, name: str) -> FunctionPool | None:
        """``name`` or ``name.<namespace>`` (only ``openfaas-fn`` exists here)."""
        base, _, namespace = name.partition(".")
        if namespace and namespace != NAMESPACE:
            return None
        return self.pools.get(base)

    # -- actions ---------------------------------------------------------------------------

    def invoke(
        self, pool: FunctionPool, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Upstream:
        """Pass one request to a replica (another one if the first cannot be reached)."""
        name = pool.spec.name
        started = time.monotonic()
        forward = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        forward.setdefault("X-Call-Id", os.urandom(8).hex())
        pool.count_invocation()
        last_error = ""
        for _attempt in range(2):
            # The function as deployed now; entered under the lock the rolling replacement swaps
            # pools under, so the old pool's drain waits for every call that chose it.
            with self._lock:
                current = self.pools.get(name, pool)
                current.enter()
            try:
                replica = current.pick()
                resp = self.http.request(
                    method,
                    replica.url + path,
                    body=body,
                    headers=forward,
                    timeout=urllib3.Timeout(connect=2.0, read=timeout_of(current.spec)),
                    retries=False,
                    preload_content=True,
                    redirect=False,
                )
            except ReplicaError as exc:
                last_error = str(exc)
                break
            except urllib3.exceptions.NewConnectionError as exc:
                last_error = f"replica unreachable: {exc}"
                continue
            except urllib3.exceptions.HTTPError as exc:
                last_error = f"upstream error: {type(exc).__name__}"
                break
            finally:
                current.leave()
            elapsed = time.monotonic() - started
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            out["X-Duration-Seconds"] = f"{elapsed:.6f}"
            out["X-Call-Id"] = forward["X-Call-Id"]
            self.metrics.observe(name, resp.status, elapsed)
            return Upstream(int(resp.status), resp.data, out)
        self.metrics.observe(name, 502, time.monotonic() - started)
        logger.warning("invoke %s failed: %s", name, last_error)
        return Upstream(502, f"cannot reach function {name}: {last_error}\n".encode())

    def deploy(self, body: Mapping[str, Any], *, update: bool) -> tuple[int, str]:
        """``POST`` (create) or ``PUT`` (update, 404 when unknown) of ``/system/functions``."""
        try:
            spec = FunctionSpec.from_deployment(body, self.specs.get(str(body.get("service"))))
        except StackFileError as exc:
            return 400, str(exc)
        with self._lock:
            old = self.pools.get(spec.name)
            if update and old is None:
                return 404, f"function {spec.name} not found"
            pool = FunctionPool(spec, self._context)
        try:
            pool.prepare()
        except ReplicaError as exc:
            # Nothing of it can run here (no build folder, no such image): refused, and an
            # update leaves the running version in place, saying why the new one was refused.
            logger.error("deploy of %s refused: %s", spec.name, exc)
            if old is not None:
                old.deploy_error = f"update to {spec.image} refused: {exc}"
            return 400, f"function {spec.name}: {exc}"
        try:
            if old is None:
                pool.scale(max(spec.min_replicas, 1))
            else:
                pool.start_like(old)
        except ReplicaError as exc:
            logger.error("deploy of %s failed: %s", spec.name, exc)
            with self._lock:
                if old is None:
                    self.pools[spec.name] = pool  # listed with its error, retried later
                    self.specs[spec.name] = spec
                else:
                    old.deploy_error = f"update to {spec.image} failed: {exc}"
            return 500, f"function {spec.name}: {exc}"
        with self._lock:
            self.specs[spec.name] = spec
            self.pools[spec.name] = pool
        if old is not None:
            # After the swap new calls go to the new replicas; those in flight finish first.
            if not old.drain(timeout_of(old.spec)):
                logger.warning("calls to the old %s still running; stopping it", spec.name)
            old.stop()
        return (202 if update else 200), ""

    def scale(self, pool: FunctionPool, replicas: int) -> None:
        """Scale in the background (the API answers 202 at once, as OpenFaaS does)."""

        def run() -> None:
            try:
                pool.scale(replicas)
                logger.info("scaled %s to %d replicas", pool.spec.name, replicas)
            except ReplicaError as exc:
                logger.error("scaling %s to %d failed: %s", pool.spec.name, replicas, exc)

        threading.Thread(target=run, name=f"scale-{pool.spec.name}", daemon=True).start()

    def remove(self, name: str) -> bool:
        with self._lock:
            pool = self.pools.pop(name, None)
            self.specs.pop(name, None)
        if pool is None:
            return False
        pool.stop()
        return True
