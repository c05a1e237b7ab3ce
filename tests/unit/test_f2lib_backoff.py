"""The one backoff policy: capped exponential delays, jitter bounds, and the retry loop."""

from __future__ import annotations

import threading

import pytest

from f2lib.backoff import Backoff
from f2lib.errors import ConfigError


def test_backoff__grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4, jitter=0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_delay__first_failure_waits_the_base_and_the_bridge_numbers_are_kept() -> None:
    resend = Backoff(base_s=0.2, cap_s=30.0)
    assert [resend.delay(n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.6]
    assert resend.delay(0) == 0.2


def test_delay__stays_at_the_cap_after_thousands_of_failures() -> None:
    # a power 2.0 ** 1024 overflows a float: a days-long outage must not crash the retry loop
    assert Backoff(base_s=1.0, cap_s=30.0).delay(100_000) == 30.0


def test_delay__a_cap_below_the_base_wins() -> None:
    assert Backoff(base_s=1.0, cap_s=0.2).delay(1) == 0.2


def test_delay__factor_one_is_a_fixed_pause() -> None:
    assert {Backoff(base_s=3.0, cap_s=10.0, factor=1.0).delay(n) for n in range(1, 20)} == {3.0}


def test_delay__jitter_stretches_by_at_most_its_fraction() -> None:
    backoff = Backoff(base_s=1.0, cap_s=4.0, jitter=0.1)
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(4.0 <= d <= 4.4 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    "settings",
    [{"base_s": 0}, {"cap_s": -1}, {"factor": 0.5}, {"jitter": -0.1}],
    ids=["zero_base", "negative_cap", "shrinking_factor", "negative_jitter"],
)
def test_backoff__refuses_settings_that_make_no_policy(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Backoff(**settings)


def test_retry__returns_the_first_success_after_waiting_each_delay() -> None:
    outcomes: list[Exception | str] = [OSError("down"), OSError("still down"), "up"]
    waited: list[float] = []

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = Backoff(base_s=0.001, cap_s=0.002).retry(
        attempt, threading.Event(), on_retry=lambda exc, delay: waited.append(delay)
    )
    assert result == "up"
    assert waited == [0.001, 0.002]


def test_retry__gives_none_without_trying_when_already_stopped() -> None:
    stop = threading.Event()
    stop.set()
    calls: list[int] = []
    assert Backoff().retry(lambda: calls.append(1), stop) is None
    assert calls == []


def test_retry__stop_during_the_wait_ends_the_loop() -> None:
    stop = threading.Event()

    def attempt() -> None:
        raise OSError("down")

    # the only wait is an hour long: the loop returns because stop is set while it waits
    result = Backoff(base_s=3600, cap_s=3600).retry(
        attempt, stop, on_retry=lambda exc, delay: stop.set()
    )
    assert result is None


def test_retry__an_error_not_listed_propagates() -> None:
    def attempt() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        Backoff(base_s=0.001).retry(attempt, threading.Event(), errors=(OSError,))
