"""Batches of one partition's records: count/bytes/linger bounds and bisection.

How a record and a batch look on the wire is the invocation contract's
(``f2lib.contracts.invocation``); this module decides which records go together.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from f2lib.contracts.invocation import Element, batch_body, batch_headers


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive records of one partition, in offset order."""

    elements: tuple[Element, ...]

    def __post_init__(self) -> None:
        if not self.elements:
            raise ValueError("a batch holds at least one record")

    @property
    def topic(self) -> str:
        return self.elements[0].topic

    @property
    def partition(self) -> int:
        return self.elements[0].partition

    @property
    def first_offset(self) -> int:
        return self.elements[0].offset

    @property
    def last_offset(self) -> int:
        return self.elements[-1].offset

    @property
    def count(self) -> int:
        return len(self.elements)

    def body(self) -> bytes:
        return batch_body(self.elements)

    def headers(self) -> dict[str, str]:
        return batch_headers(self.elements)

    def split(self) -> tuple[Batch, Batch]:
        """Two halves in order (bisection of a refused batch)."""
        if self.count < 2:
            raise ValueError("a batch of one record cannot be split")
        middle = self.count // 2
        return Batch(self.elements[:middle]), Batch(self.elements[middle:])


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Bounds of one batch: records, body bytes, and how long the first record may wait."""

    max_records: int = 500
    max_bytes: int = 1_048_576
    linger_s: float = 0.05


class PartitionBuffer:
    """Records of one partition waiting for a batch; says when a batch is due and cuts it."""

    def __init__(self, limits: BatchLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._elements: deque[Element] = deque()
        self._bytes = 0
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._elements)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add(self, element: Element) -> None:
        if not self._elements:
            self._first_at = self._clock()
        self._elements.append(element)
        self._bytes += len(element.body) + 1

    def due_in(self) -> float | None:
        """Seconds until a batch is due (0 when it is), None when empty."""
        if not self._elements:
            return None
        if len(self._elements) >= self.limits.max_records or self._bytes >= self.limits.max_bytes:
            return 0.0
        assert self._first_at is not None
        return max(0.0, self._first_at + self.limits.linger_s - self._clock())

    def ready(self) -> bool:
        return self.due_in() == 0.0

    def take(self) -> Batch | None:
        """Cut the next batch within the bounds (one oversized record goes alone)."""
        if not self._elements:
            return None
        taken: list[Element] = []
        size = 2
        while self._elements and len(taken) < self.limits.max_records:
            element = self._elements[0]
            grown = size + len(element.body) + (1 if taken else 0)
            if taken and grown > self.limits.max_bytes:
                break
            taken.append(self._elements.popleft())
            self._bytes -= len(element.body) + 1
            size = grown
        if not self._elements:
            self._first_at = None  # what is left has waited since the same first arrival
        return Batch(tuple(taken))

    def clear(self) -> None:
        self._elements.clear()
        self._bytes = 0
        self._first_at = None
