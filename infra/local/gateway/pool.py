"""The replicas of one function: scaling, round robin, restarts, rolling replacement."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from f2lib.backoff import Backoff
from f2lib.errors import ReplicaError
from infra.deploy.stackfile import FunctionSpec
from infra.local.gateway.backends import Replica, ReplicaBackend, write_secrets

logger = logging.getLogger(__name__)

MAX_LOCAL_REPLICAS = 20
# A deployment that cannot start is tried again, less and less often.
RESTART_BACKOFF = Backoff(base_s=2.0, cap_s=60.0)


@dataclass
class PoolContext:
    """What every pool shares: the backend, the secrets and the environment given on top."""

    backend: ReplicaBackend
    secrets_dir: Path
    state_dir: Path
    env_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    on_change: Callable[[], None] = lambda: None


class FunctionPool:
    """The replicas of one deployment; ``error`` says why the last start failed, if it did."""

    def __init__(self, spec: FunctionSpec, context: PoolContext) -> None:
        self.spec = spec
        self.context = context
        self.replicas: list[Replica] = []
        self.desired = 0
        self.invocations = 0
        self.error: str | None = None
        self.deploy_error: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._counter = itertools.count()
        self._rr = itertools.count()
        self._lock = threading.RLock()
        self._in_flight = 0
        self._idle = threading.Condition()

    def count_invocation(self) -> None:
        with self._idle:
            self.invocations += 1

    def enter(self) -> None:
        """A call to this pool begins: a replacement waits until it has left."""
        with self._idle:
            self._in_flight += 1

    def leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no call is in flight (True), or ``timeout`` passed (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    @property
    def secrets_path(self) -> Path:
        return self.context.state_dir / "secrets" / self.spec.name

    def prepare(self) -> None:
        """Check the deployment can run and lay out its secrets; ReplicaError (kept) if not."""
        owner_of = getattr(self.context.backend, "secrets_owner", None)
        try:
            self.context.backend.prepare(self.spec, {})
            owner = owner_of(self.spec) if owner_of is not None else None
        except ReplicaError as exc:
            self.error = str(exc)
            raise
        found = write_secrets(
            self.context.secrets_dir, self.secrets_path, self.spec.secrets, owner=owner
        )
        for name in self.spec.secrets:
            if name not in found:
                logger.warning("function %s: secret %s not found", self.spec.name, name)

    def environment(self) -> dict[str, str]:
        """The function's environment: stack.yml's, then the runtime's overrides."""
        env = dict(self.spec.environment)
        env.update(self.context.env_overrides.get("*", {}))
        env.update(self.context.env_overrides.get(self.spec.name, {}))
        env["F2_SECRETS_DIR"] = str(self.secrets_path)
        env["PYTHONUNBUFFERED"] = "1"
        env["F2_FUNCTION_NAME"] = self.spec.name
        return env

    def _start_one(self) -> Replica:
        replica = self.context.backend.replica(self.spec, next(self._counter), self.environment())
        try:
            replica.start(60.0)
        except ReplicaError as exc:
            self.error = str(exc)
            self._failures += 1
            self._retry_at = time.monotonic() + RESTART_BACKOFF.delay(self._failures)
            replica.stop()
            raise
        self.error, self._failures = None, 0
        return replica

    def scale(self, replicas: int) -> None:
        """Start or stop replicas until ``replicas`` run; ReplicaError when one cannot start."""
        replicas = max(0, min(replicas, MAX_LOCAL_REPLICAS))
        with self._lock:
            self.desired = replicas
            try:
                while len(self.replicas) < replicas:
                    self.replicas.append(self._start_one())
                    self.context.on_change()
                while len(self.replicas) > replicas:
                    self.replicas.pop().stop()
                    self.context.on_change()
            finally:
                self.context.on_change()

    def start_like(self, old: FunctionPool) -> None:
        """The first half of a rolling replacement: as many replicas as ``old`` wants, ready.

        ``old`` keeps serving meanwhile; the caller swaps the pools, then stops ``old``. When
        one cannot start, those started are stopped again and the error is raised.
        """
        self.invocations = old.invocations
        with self._lock:
            self.desired = max(self.spec.min_replicas, old.desired, 1)
            try:
                while len(self.replicas) < self.desired:
                    self.replicas.append(self._start_one())
            except ReplicaError:
                self.stop()
                raise
            finally:
                self.context.on_change()

    def available(self) -> int:
        return sum(1 for r in list(self.replicas) if r.alive())

    def pick(self) -> Replica:
        ready = [r for r in list(self.replicas) if r.alive()]
        if not ready:
            why = f": {self.error}" if self.error else ""
            raise ReplicaError(f"no ready replica of {self.spec.name!r}{why}")
        return ready[next(self._rr) % len(ready)]

    def supervise(self) -> None:
        """Replace replicas that died, and start missing ones after a failed start."""
        with self._lock:
            for i, replica in enumerate(list(self.replicas)):
                if replica.alive():
                    continue
                logger.warning(
                    "replica %s of %s died; restarting", replica.instance, self.spec.name
                )
                replica.stop()
                try:
                    self.replicas[i] = self._start_one()
                except ReplicaError as exc:
                    logger.error("restart of %s failed: %s", self.spec.name, exc)
                    self.replicas.pop(i)
                    break
                self.context.on_change()
            if len(self.replicas) < self.desired and time.monotonic() >= self._retry_at:
                try:
                    self.replicas.append(self._start_one())
                except ReplicaError as exc:
                    logger.error("start of %s failed: %s", self.spec.name, exc)
                self.context.on_change()

    def stop(self) -> None:
        with self._lock:
            while self.replicas:
                self.replicas.pop().stop()
            self.context.on_change()
