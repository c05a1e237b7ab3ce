"""Waiting in tests: poll a condition until it holds, or fail saying what was awaited.

Tests wait for a positive signal (a record, a row, a metric, a log line, an offset, a process
state), never for a fixed time: to show that something did *not* happen, they wait for a
signal that comes after it would have (a sentinel) and then look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MAX_SHOWN = 400  # characters of the last value shown in a timeout's message


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not reached",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return it.

    After ``timeout`` seconds raise AssertionError with ``message`` (a callable is called only
    then, e.g. for a log tail) and the predicate's last value. A long timeout costs nothing
    while things go right: the wait ends as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            shown = repr(value)
            if len(shown) > MAX_SHOWN:
                shown = shown[:MAX_SHOWN] + "..."
            raise AssertionError(f"{text} (waited {timeout:g}s; last value: {shown})")
        time.sleep(interval)
