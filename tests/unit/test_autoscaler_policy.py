"""The scaling policy: lag history and limits in, replicas out (pure)."""

from __future__ import annotations

import pytest

from infra.services.autoscaler.policy import (
    Direction,
    LagSample,
    Limits,
    PolicyConfig,
    Recommendation,
    decide,
    drain_rate,
    recommend,
)

CONFIG = PolicyConfig(cooldown_s=60, drain_horizon_s=30, rate_window_s=20, lookahead_s=10)
LIMITS = Limits(min_replicas=1, max_replicas=5, lag_target=100, partitions=6)
LONG_AGO = -1000.0


def samples(*points: tuple[float, int]) -> list[LagSample]:
    return [LagSample(at, lag) for at, lag in points]


def test_drain_rate__positive_when_lag_shrinks_over_the_window() -> None:
    assert drain_rate(samples((0, 1000), (10, 800), (20, 600)), 30) == pytest.approx(20.0)


def test_drain_rate__negative_when_lag_grows() -> None:
    assert drain_rate(samples((0, 100), (10, 300)), 30) == pytest.approx(-20.0)


def test_drain_rate__only_samples_inside_the_window_count() -> None:
    points = samples((0, 10_000), (50, 1000), (60, 900))
    assert drain_rate(points, 15) == pytest.approx(10.0)


def test_drain_rate__none_with_a_single_sample() -> None:
    assert drain_rate(samples((5, 100)), 30) is None


def test_recommend__no_lag_is_the_minimum() -> None:
    assert recommend(0, None, 3, LIMITS, CONFIG)[0] == 1


def test_recommend__first_burst_is_lag_over_target() -> None:
    assert recommend(350, None, 1, LIMITS, CONFIG)[0] == 4


def test_recommend__clamped_to_max_replicas() -> None:
    assert recommend(100_000, None, 1, LIMITS, CONFIG)[0] == 5


def test_recommend__clamped_to_partition_count() -> None:
    limits = Limits(min_replicas=1, max_replicas=5, lag_target=100, partitions=3)
    assert recommend(100_000, None, 1, limits, CONFIG)[0] == 3


def test_recommend__minimum_wins_over_fewer_partitions() -> None:
    limits = Limits(min_replicas=2, max_replicas=5, lag_target=100, partitions=1)
    assert recommend(100_000, None, 1, limits, CONFIG)[0] == 2


def test_recommend__unknown_partition_count_does_not_cap() -> None:
    limits = Limits(min_replicas=1, max_replicas=5, lag_target=100, partitions=0)
    assert recommend(100_000, None, 1, limits, CONFIG)[0] == 5


def test_recommend__fast_enough_drain_adds_no_replica() -> None:
    # 500 records at 50/s drain in 10s, inside the 30s horizon: two replicas keep going.
    assert recommend(500, 50.0, 2, LIMITS, CONFIG)[0] == 2


def test_recommend__fast_drain_still_recommends_fewer_when_lag_is_small() -> None:
    assert recommend(150, 50.0, 4, LIMITS, CONFIG)[0] == 2


def test_recommend__slow_drain_scales_to_lag_over_target() -> None:
    # 500 records at 5/s need 100s, beyond the horizon.
    assert recommend(500, 5.0, 2, LIMITS, CONFIG)[0] == 5


def test_recommend__growing_lag_is_projected_ahead() -> None:
    # 150 now, growing 10/s: 250 in the 10s look-ahead -> 3 replicas, not 2.
    assert recommend(150, -10.0, 1, LIMITS, CONFIG)[0] == 3


def test_decide__scales_up_at_once() -> None:
    decision = decide(samples((0, 450)), [], 1, LIMITS, 0.0, CONFIG, watched_since=0.0)
    assert decision.direction is Direction.UP
    assert decision.desired == 5


def test_decide__raises_to_minimum_even_without_lag() -> None:
    decision = decide(samples((0, 0)), [], 0, LIMITS, 0.0, CONFIG, watched_since=0.0)
    assert (decision.direction, decision.desired) == (Direction.UP, 1)


def test_decide__holds_when_recommendation_equals_current() -> None:
    decision = decide(samples((0, 250)), [], 3, LIMITS, 0.0, CONFIG, watched_since=LONG_AGO)
    assert (decision.direction, decision.desired) == (Direction.HOLD, 3)


def test_decide__no_scale_down_inside_the_cooldown_after_a_high_recommendation() -> None:
    history = [Recommendation(100.0, 4), Recommendation(130.0, 2)]
    decision = decide(samples((150, 0)), history, 4, LIMITS, 150.0, CONFIG, LONG_AGO)
    assert (decision.direction, decision.desired) == (Direction.HOLD, 4)


def test_decide__scales_down_to_highest_recommendation_of_the_cooldown() -> None:
    history = [Recommendation(100.0, 4), Recommendation(130.0, 2)]
    decision = decide(samples((165, 0)), history, 4, LIMITS, 165.0, CONFIG, LONG_AGO)
    assert (decision.direction, decision.desired) == (Direction.DOWN, 2)


def test_decide__scales_down_to_minimum_after_a_quiet_cooldown() -> None:
    history = [Recommendation(100.0, 1), Recommendation(130.0, 1)]
    decision = decide(samples((170, 0)), history, 5, LIMITS, 170.0, CONFIG, LONG_AGO)
    assert (decision.direction, decision.desired) == (Direction.DOWN, 1)


def test_decide__no_scale_down_before_watching_for_a_cooldown() -> None:
    decision = decide(samples((10, 0)), [], 5, LIMITS, 10.0, CONFIG, watched_since=0.0)
    assert (decision.direction, decision.desired) == (Direction.HOLD, 5)


def test_decide__above_a_lowered_limit_goes_down_at_once() -> None:
    limits = Limits(min_replicas=1, max_replicas=2, lag_target=100, partitions=6)
    decision = decide(samples((0, 10_000)), [], 5, limits, 0.0, CONFIG, watched_since=0.0)
    assert (decision.direction, decision.desired) == (Direction.DOWN, 2)


def test_decide__burst_then_drain_then_cooldown_returns_to_minimum() -> None:
    """A whole episode at 5 s ticks: up promptly, hold while draining, back to 1 after cool-down."""
    lags = [0, 900, 700, 450, 200, 0] + [0] * 20
    current, history, points, replicas_seen = 1, [], [], []
    for tick, lag in enumerate(lags):
        now = tick * 5.0
        points.append(LagSample(now, lag))
        decision = decide(points, history, current, LIMITS, now, CONFIG, watched_since=LONG_AGO)
        history.append(Recommendation(now, decision.recommended))
        current = decision.desired
        replicas_seen.append(current)
    assert max(replicas_seen) == 5
    assert replicas_seen[1] == 5  # the tick the burst shows
    assert replicas_seen[-1] == 1
    first_down = next(i for i, r in enumerate(replicas_seen) if i > 1 and r < 5)
    assert first_down * 5.0 - 5.0 >= CONFIG.cooldown_s  # not before the cool-down after the burst
