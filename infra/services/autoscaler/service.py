"""The autoscaler's loop: read the gateway and Kafka, decide per function, scale, export."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from f2lib.contracts.functions import CONNECTOR_GROUP_PREFIX, ScalingSpec, scaling_spec
from f2lib.errors import ConfigError, GatewayError, StreamError
from infra.services.autoscaler.lag import GroupLag, LagReader
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.autoscaler.policy import (
    Decision,
    Direction,
    LagSample,
    Limits,
    PolicyConfig,
    Recommendation,
    decide,
)
from infra.services.kit.openfaas import FunctionStatus

logger = logging.getLogger(__name__)


class ScaleApi(Protocol):
    """The gateway calls the autoscaler makes (``OpenFaaSClient`` in production)."""

    def functions(self) -> list[FunctionStatus]: ...

    def scale(self, name: str, replicas: int) -> None: ...


@dataclass
class FunctionTrack:
    """What the autoscaler remembers of one function between cycles."""

    spec: ScalingSpec
    watched_since: float
    samples: deque[LagSample] = field(default_factory=deque)
    recommendations: deque[Recommendation] = field(default_factory=deque)
    last: Decision | None = None

    def trim(self, now: float, config: PolicyConfig) -> None:
        while len(self.samples) > 2 and now - self.samples[0].at > config.rate_window_s:
            self.samples.popleft()
        while self.recommendations and now - self.recommendations[0].at >= config.cooldown_s:
            self.recommendations.popleft()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One function's decision in one cycle, and whether the scale call went through."""

    function: str
    decision: Decision
    applied: bool


class Autoscaler:
    """Scales every function that carries a ``topic`` annotation and a lag target label."""

    def __init__(
        self,
        gateway: ScaleApi,
        lag_reader: LagReader,
        metrics: AutoscalerMetrics,
        policy: PolicyConfig,
        *,
        interval_s: float = 5.0,
        group_prefix: str = CONNECTOR_GROUP_PREFIX,
        replica_cap: int = 0,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._gateway = gateway
        self._lag = lag_reader
        self._metrics = metrics
        self._policy = policy
        self._interval = interval_s
        self._prefix = group_prefix
        self._cap = replica_cap
        self._dry_run = dry_run
        self._clock = clock
        self._wall = wall_clock
        self._tracks: dict[str, FunctionTrack] = {}
        self._bad_specs: set[str] = set()
        self._last_ok: float | None = None
        self._lock = threading.Lock()

    # -- one cycle ----------------------------------------------------------------------------

    def cycle(self) -> list[Outcome]:
        """Read, decide and scale once; returns the decisions taken (raises nothing)."""
        with self._lock:
            try:
                statuses = self._gateway.functions()
            except GatewayError as exc:
                logger.warning("cycle skipped: %s", exc)
                self._metrics.cycles.labels("gateway_error").inc()
                return []
            now = self._clock()
            specs = self._specs(statuses)
            self._forget_missing(specs)
            groups = {s.consumer_group(self._prefix): s.topics for s, _ in specs.values()}
            try:
                lags = self._lag.read(groups) if groups else {}
            except StreamError as exc:
                logger.warning("cycle skipped: %s", exc)
                self._metrics.cycles.labels("kafka_error").inc()
                return []
            outcomes = []
            for name, (spec, status) in specs.items():
                lag = lags.get(spec.consumer_group(self._prefix))
                if lag is None:
                    logger.warning(
                        "function %s: no lag for group %s this cycle",
                        name,
                        spec.consumer_group(self._prefix),
                    )
                    continue
                outcomes.append(self._evaluate(spec, status, lag, now))
            self._metrics.functions.set(len(specs))
            self._metrics.cycles.labels("ok").inc()
            self._metrics.last_cycle.set(self._wall())
            self._last_ok = now
            return outcomes

    def _specs(
        self, statuses: list[FunctionStatus]
    ) -> dict[str, tuple[ScalingSpec, FunctionStatus]]:
        found = {}
        for status in statuses:
            try:
                spec = scaling_spec(status.name, status.labels, status.annotations)
            except ConfigError as exc:
                if status.name not in self._bad_specs:
                    logger.error("not scaling %s: %s", status.name, exc)
                    self._bad_specs.add(status.name)
                continue
            self._bad_specs.discard(status.name)
            if spec is not None:
                found[status.name] = (spec.capped(self._cap), status)
        return found

    def _forget_missing(self, specs: Mapping[str, Any]) -> None:
        for name in list(self._tracks):
            if name not in specs:
                logger.info("function %s is gone or no longer lag-scaled", name)
                del self._tracks[name]
                self._metrics.forget(name)

    def _evaluate(
        self, spec: ScalingSpec, status: FunctionStatus, lag: GroupLag, now: float
    ) -> Outcome:
        track = self._tracks.get(spec.function)
        if track is None or track.spec != spec:
            track = FunctionTrack(spec, watched_since=now if track is None else track.watched_since)
            self._tracks[spec.function] = track
        track.samples.append(LagSample(now, lag.total))
        track.trim(now, self._policy)
        limits = Limits.of(spec, lag.partition_count)
        decision = decide(
            list(track.samples),
            list(track.recommendations),
            status.replicas,
            limits,
            now,
            self._policy,
            track.watched_since,
        )
        track.recommendations.append(Recommendation(now, decision.recommended))
        track.last = decision
        self._export(spec, limits, decision)
        if decision.direction is Direction.HOLD:
            logger.debug("%s holds %d: %s", spec.function, decision.current, decision.reason)
            return Outcome(spec.function, decision, applied=False)
        return Outcome(spec.function, decision, self._apply(spec.function, decision))

    def _apply(self, name: str, decision: Decision) -> bool:
        verb = "would scale" if self._dry_run else "scaling"
        logger.info(
            "%s %s %d -> %d (%s): lag %d, %s",
            verb,
            name,
            decision.current,
            decision.desired,
            decision.direction.value,
            decision.lag,
            decision.reason,
        )
        if self._dry_run:
            return False
        try:
            self._gateway.scale(name, decision.desired)
        except GatewayError as exc:
            logger.error("scaling %s to %d failed: %s", name, decision.desired, exc)
            self._metrics.scale_errors.labels(name).inc()
            return False
        self._metrics.decisions.labels(name, decision.direction.value).inc()
        return True

    def _export(self, spec: ScalingSpec, limits: Limits, decision: Decision) -> None:
        m, fn = self._metrics, spec.function
        m.lag.labels(fn).set(decision.lag)
        m.drain_rate.labels(fn).set(decision.drain_rate or 0.0)
        m.current.labels(fn).set(decision.current)
        m.desired.labels(fn).set(decision.desired)
        m.recommended.labels(fn).set(decision.recommended)
        m.lag_target.labels(fn).set(spec.lag_target)
        m.limit.labels(fn, "min").set(limits.min_replicas)
        m.limit.labels(fn, "max").set(limits.max_replicas)
        m.limit.labels(fn, "partitions").set(limits.partitions)

    # -- loop and health ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Cycle every interval until ``stop`` is set."""
        logger.info(
            "autoscaler cycling every %.1fs, cool-down %.0fs%s",
            self._interval,
            self._policy.cooldown_s,
            " (dry run)" if self._dry_run else "",
        )
        while not stop.is_set():
            started = self._clock()
            try:
                self.cycle()
            except Exception:  # one bad cycle must not end the service; the next one retries
                logger.exception("autoscaler cycle failed")
                self._metrics.cycles.labels("error").inc()
            stop.wait(max(0.0, self._interval - (self._clock() - started)))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when a cycle read the gateway and Kafka within three intervals."""
        with self._lock:
            now = self._clock()
            age = None if self._last_ok is None else now - self._last_ok
            functions = {
                name: {
                    "lag": t.last.lag,
                    "current": t.last.current,
                    "desired": t.last.desired,
                    "min": t.spec.min_replicas,
                    "max": t.spec.max_replicas,
                    "lag_target": t.spec.lag_target,
                }
                for name, t in self._tracks.items()
                if t.last is not None
            }
        healthy = age is not None and age <= max(3 * self._interval, 30.0)
        return healthy, {
            "last_cycle_age_s": age,
            "interval_s": self._interval,
            "cooldown_s": self._policy.cooldown_s,
            "functions": functions,
        }
