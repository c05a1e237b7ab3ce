"""The scaling policy, pure: lag history, past recommendations and limits in, replicas out.

Recommendation. ``need = ceil(lag / lag_target)``, adjusted by the observed drain rate (records
per second the lag shrinks by, over ``rate_window_s``): when the current replicas will drain the
lag within ``drain_horizon_s`` no replica is added; when the lag grows, the need is taken from
the lag projected ``lookahead_s`` ahead. The result is clamped to the function's min and max and
to the partition count (the connector feeds at most one batch per partition at a time, so more
replicas than partitions add nothing).

Decision. Up at once to the recommendation. Down only to the highest recommendation of the last
``cooldown_s`` (the Kubernetes HPA's stabilization window), and only once the autoscaler has
watched the function for that long, so a restart never sheds replicas that are still needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from f2lib.contracts.functions import DEFAULT_COOLDOWN_SECONDS, ScalingSpec


class Direction(StrEnum):
    """Which way a decision moves the replicas."""

    UP = "up"
    DOWN = "down"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy's time constants, in seconds."""

    cooldown_s: float = DEFAULT_COOLDOWN_SECONDS
    drain_horizon_s: float = 60.0
    rate_window_s: float = 30.0
    lookahead_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Replica bounds of one function right now."""

    min_replicas: int
    max_replicas: int
    lag_target: int
    partitions: int = 0  # 0: unknown, no partition cap

    @classmethod
    def of(cls, spec: ScalingSpec, partitions: int) -> Limits:
        return cls(spec.min_replicas, spec.max_replicas, spec.lag_target, partitions)

    @property
    def upper(self) -> int:
        """The most replicas worth running: max, no more than partitions, never below min."""
        cap = self.max_replicas if self.partitions <= 0 else min(self.max_replicas, self.partitions)
        return max(self.min_replicas, cap)

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(replicas, self.upper))


@dataclass(frozen=True, slots=True)
class LagSample:
    """Total lag of a function's consumer group at a monotonic time."""

    at: float
    lag: int


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What the policy recommended at a monotonic time (before cool-down)."""

    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict for one function at one tick."""

    current: int
    desired: int
    recommended: int
    direction: Direction
    lag: int
    drain_rate: float | None
    reason: str


def drain_rate(samples: Sequence[LagSample], window_s: float) -> float | None:
    """Records per second the lag shrank by over the last ``window_s`` (negative: it grew).

    None with fewer than two samples in the window. Samples are in time order.
    """
    if len(samples) < 2:
        return None
    newest = samples[-1]
    oldest = next((s for s in samples if newest.at - s.at <= window_s), newest)
    span = newest.at - oldest.at
    if span <= 0:
        return None
    return (oldest.lag - newest.lag) / span


def recommend(
    lag: int, rate: float | None, current: int, limits: Limits, config: PolicyConfig
) -> tuple[int, str]:
    """Replicas wanted for ``lag`` at ``rate``, clamped, and why."""
    if lag <= 0:
        return limits.clamp(0), "no lag"
    need = math.ceil(lag / limits.lag_target)
    if rate is None:
        wanted, why = need, f"lag {lag} / target {limits.lag_target}"
    elif rate > 0 and lag / rate <= config.drain_horizon_s:
        wanted = min(need, max(current, 1))
        why = f"draining {rate:.0f}/s, ~{lag / rate:.0f}s to go"
    elif rate > 0:
        wanted, why = need, f"draining {rate:.0f}/s, too slow ({lag / rate:.0f}s to go)"
    else:
        projected = lag - rate * config.lookahead_s
        wanted = math.ceil(projected / limits.lag_target)
        why = f"lag growing {-rate:.0f}/s, {projected:.0f} in {config.lookahead_s:.0f}s"
    clamped = limits.clamp(wanted)
    if clamped != wanted:
        why += f" (clamped {wanted} to {limits.min_replicas}..{limits.upper})"
    return clamped, why


def decide(
    samples: Sequence[LagSample],
    recommendations: Sequence[Recommendation],
    current: int,
    limits: Limits,
    now: float,
    config: PolicyConfig,
    watched_since: float,
) -> Decision:
    """The replicas a function should run now.

    ``samples`` ends with the lag just read; ``recommendations`` are the earlier ones (the
    caller appends ``Decision.recommended`` at ``now``); ``watched_since`` is when this
    function was first seen.
    """
    lag = samples[-1].lag if samples else 0
    rate = drain_rate(samples, config.rate_window_s)
    recommended, why = recommend(lag, rate, current, limits, config)

    def verdict(desired: int, direction: Direction, reason: str) -> Decision:
        return Decision(current, desired, recommended, direction, lag, rate, reason)

    if current < limits.min_replicas or recommended > current:
        return verdict(max(recommended, limits.min_replicas), Direction.UP, why)
    if current > limits.upper:
        return verdict(limits.upper, Direction.DOWN, f"above the limit {limits.upper}")
    if recommended == current:
        return verdict(current, Direction.HOLD, why)
    if now - watched_since < config.cooldown_s:
        return verdict(current, Direction.HOLD, f"{why}; watching a cool-down before going down")
    window = [r.replicas for r in recommendations if now - r.at < config.cooldown_s]
    stabilized = min(current, max([recommended, *window]))
    if stabilized >= current:
        return verdict(current, Direction.HOLD, f"{why}; cool-down holds {current}")
    return verdict(
        stabilized, Direction.DOWN, f"{why}; none above {stabilized} for {config.cooldown_s:.0f}s"
    )
