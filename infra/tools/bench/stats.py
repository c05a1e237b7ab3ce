"""Pure figures of the benchmark: rates, percentiles, ratios, memory flatness and the targets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Targets of issue 6, as ratios from the same run.
TARGET_VS_BASELINE = 10.0  # end to end >= 10x the per-message baseline
TARGET_VS_SLOWEST_RAW = 0.5  # end to end >= half the slowest raw stage
TARGET_SINK_VS_COPY = 0.7  # sink >= 70% of raw COPY
TARGET_P99_S = 1.0  # p99 latency under one second at half the sustained maximum
TARGET_MEMORY_GROWTH = 0.2  # peak during the burst within 20% of the level before it


def rate(count: float, seconds: float) -> float:
    """Items per second; 0 when nothing was timed."""
    if seconds <= 0 or count <= 0:
        return 0.0
    return count / seconds


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when the denominator is 0 (nothing to compare with)."""
    if denominator <= 0:
        return None
    return numerator / denominator


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles in seconds over ``count`` messages."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def summarize_latency(values: Sequence[float]) -> LatencySummary:
    if not values:
        raise ValueError("no latency samples")
    return LatencySummary(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values),
        mean=sum(values) / len(values),
    )


def messages_equivalent(rows_per_second: float, rows_per_message: float) -> float:
    """A row rate expressed as messages per second of the same input."""
    if rows_per_message <= 0:
        return 0.0
    return rows_per_second / rows_per_message


def slowest(stages: Mapping[str, float]) -> tuple[str, float]:
    """The stage with the lowest rate (ties: the first in order)."""
    if not stages:
        raise ValueError("no stages to compare")
    name = min(stages, key=lambda key: stages[key])
    return name, stages[name]


@dataclass(frozen=True)
class MemoryLevel:
    """One process's memory around a burst, in KiB."""

    before: float
    peak: float
    after: float

    @property
    def growth(self) -> float | None:
        """Peak over the level before, minus one (0.15 = 15% above)."""
        if self.before <= 0:
            return None
        return self.peak / self.before - 1.0

    def flat(self, tolerance: float = TARGET_MEMORY_GROWTH) -> bool | None:
        growth = self.growth
        return None if growth is None else growth <= tolerance


def memory_level(
    samples: Sequence[tuple[float, float]], burst_start: float, burst_end: float, after_start: float
) -> MemoryLevel:
    """Before = mean of the samples before the burst; peak = max from the burst start until the
    after window; after = mean of the samples from ``after_start`` on. Samples: (time, KiB)."""
    before = [kib for at, kib in samples if at < burst_start]
    during = [kib for at, kib in samples if burst_start <= at < after_start]
    after = [kib for at, kib in samples if at >= after_start]
    if not during:
        during = [kib for at, kib in samples if burst_start <= at <= burst_end]
    return MemoryLevel(
        before=sum(before) / len(before) if before else 0.0,
        peak=max(during) if during else 0.0,
        after=sum(after) / len(after) if after else 0.0,
    )


@dataclass(frozen=True)
class Target:
    """One target of issue 6: the measured figure, the bound, and whether it was met."""

    name: str
    measured: float | None
    bound: float
    comparison: str  # ">=", "<" or "<="

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.comparison == ">=":
            return self.measured >= self.bound
        if self.comparison == "<=":
            return self.measured <= self.bound
        return self.measured < self.bound


def evaluate_targets(
    *,
    pipeline_vs_baseline: float | None,
    pipeline_vs_slowest_raw: float | None,
    sink_vs_copy: float | None,
    p99_s: float | None,
    worst_memory_growth: float | None,
) -> list[Target]:
    return [
        Target("end-to-end / per-message baseline", pipeline_vs_baseline, TARGET_VS_BASELINE, ">="),
        Target(
            "end-to-end / slowest raw stage", pipeline_vs_slowest_raw, TARGET_VS_SLOWEST_RAW, ">="
        ),
        Target("sink / raw COPY", sink_vs_copy, TARGET_SINK_VS_COPY, ">="),
        Target("p99 latency at half the sustained max (s)", p99_s, TARGET_P99_S, "<"),
        Target(
            "memory growth during the burst (worst process)",
            worst_memory_growth,
            TARGET_MEMORY_GROWTH,
            "<=",
        ),
    ]


# Targets of issue 15, against the peer and the raw limits of the same run and the code before.
TARGET_CPU_VS_BEFORE = 1 / 3  # CPU per stored message at most a third of before
TARGET_CPU_VS_PEER = 4.0  # at most 4x the Telegraf stack's CPU per message
TARGET_RATE_VS_BEFORE = 3.0  # end to end at least 3x before
TARGET_RATE_VS_PEER = 0.35  # and at least 0.35x Telegraf's
TARGET_P99_15_S = 0.3  # p99 publish -> committed row under 300 ms at half the sustained rate
TARGET_SINK_VS_COPY_15 = 0.5  # the sink stage alone at least half of psql \copy
# "Today" in issue 15 (make bench on this machine): used when no --before run is given.
ISSUE15_TODAY_MSGS_PER_S = 3342.0
ISSUE15_TODAY_CPU_MS = 0.47


def issue15_targets(
    *,
    cpu_vs_before: float | None,
    cpu_vs_peer: float | None,
    rate_vs_before: float | None,
    rate_vs_peer: float | None,
    p99_s: float | None,
    sink_vs_copy: float | None,
    worst_memory_growth: float | None,
) -> list[Target]:
    return [
        Target("CPU per message / before", cpu_vs_before, TARGET_CPU_VS_BEFORE, "<="),
        Target("CPU per message / Telegraf stack's", cpu_vs_peer, TARGET_CPU_VS_PEER, "<="),
        Target("end to end / before", rate_vs_before, TARGET_RATE_VS_BEFORE, ">="),
        Target("end to end / Telegraf's (drain)", rate_vs_peer, TARGET_RATE_VS_PEER, ">="),
        Target("p99 latency at half the sustained max (s) [15]", p99_s, TARGET_P99_15_S, "<"),
        Target("sink stage / psql \\copy [15]", sink_vs_copy, TARGET_SINK_VS_COPY_15, ">="),
        Target(
            "heap growth during the burst (worst) [15]",
            worst_memory_growth,
            TARGET_MEMORY_GROWTH,
            "<=",
        ),
    ]
