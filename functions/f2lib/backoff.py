"""The one retry policy: capped exponential delays, optional jitter, a retry loop on a stop event.

``delay(n)`` is the pause after the ``n``-th failed attempt (1-based):
``min(base_s * factor ** (n - 1), cap_s)``, then stretched by up to ``jitter`` of itself (0.1:
at most 10 % longer) so that many clients that failed together do not retry in step.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from f2lib.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Capped exponential delays: ``base_s``, ``factor`` times longer each time, up to ``cap_s``."""

    base_s: float = 1.0
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s <= 0 or self.factor < 1 or self.jitter < 0:
            raise ConfigError(f"backoff needs base and cap > 0, factor >= 1, jitter >= 0: {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure)."""
        pause = self.base_s
        for _ in range(attempt - 1):  # multiplied, not powered: no float overflow on long outages
            if pause >= self.cap_s:
                break
            pause *= self.factor
        pause = min(pause, self.cap_s)
        if self.jitter:
            pause *= 1 + self.jitter * random.random()  # noqa: S311 (spreading, not secrecy)
        return pause

    def retry(
        self,
        action: Callable[[], T],
        stop: threading.Event,
        *,
        errors: tuple[type[Exception], ...] = (Exception,),
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> T | None:
        """``action()`` until it returns, waiting ``delay(n)`` on ``stop`` after each failure.

        Only ``errors`` are retried (others propagate); ``on_retry(error, delay)`` is told of
        each one before the wait. None when ``stop`` is set before an attempt succeeded.
        """
        attempt = 0
        while not stop.is_set():
            try:
                return action()
            except errors as exc:
                attempt += 1
                pause = self.delay(attempt)
                if on_retry is not None:
                    on_retry(exc, pause)
                stop.wait(pause)
        return None
