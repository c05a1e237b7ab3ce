"""The tests' one wait: returns what the condition gave, fails naming what was awaited."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_for


def test_wait_for__returns_the_first_truthy_value_of_the_predicate() -> None:
    answers = iter([None, [], ["row"]])
    assert wait_for(lambda: next(answers), timeout=5, interval=0) == ["row"]


def test_wait_for__on_timeout_raises_with_the_message_and_the_last_value() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"no rows yet \(waited 0.05s; last value: 0\)"):
        wait_for(lambda: 0 * next(counter), timeout=0.05, interval=0.01, message="no rows yet")
    assert next(counter) > 1, "the predicate is asked again until the deadline"


def test_wait_for__a_callable_message_is_built_only_at_the_timeout() -> None:
    built: list[str] = []

    def message() -> str:
        built.append("log tail")
        return "log tail"

    assert wait_for(lambda: True, message=message) is True
    assert built == []
    with pytest.raises(AssertionError, match="log tail"):
        wait_for(lambda: False, timeout=0, message=message)
    assert built == ["log tail"]
