"""Batches of one partition's records: encoding, count/bytes/linger bounds, headers, bisection."""

from __future__ import annotations

import base64
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from f2lib.contracts.records import ConnectorRecord

BATCH_HEADER = "X-F2-Batch"


class KafkaRecord(Protocol):
    """The fields of kafka-python's ``ConsumerRecord`` a batch needs."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Element:
    """One record encoded as an element of the batch body (a ``ConnectorRecord`` as JSON)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    key_is_b64: bool
    value: Any
    body: bytes


def encode_record(record: KafkaRecord) -> Element:
    """Encode a Kafka record: the value parsed as JSON when it is JSON, else kept as text."""
    key: str | None = None
    key_is_b64 = False
    if record.key is not None:
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            key, key_is_b64 = base64.b64encode(record.key).decode("ascii"), True
    if record.value is not None:
        # Fast path: UTF-8 JSON (what the pipeline writes) is embedded as it came, once parsed
        # to check it; the element is the same JSON the ConnectorRecord model would write.
        try:
            value = _JSON.decode(record.value.decode("utf-8"))
        except ValueError:
            pass
        else:
            body = b'{"topic":%b,"partition":%d,"offset":%d,"key":%b,"value":%b}' % (
                json.dumps(record.topic).encode(),
                record.partition,
                record.offset,
                json.dumps(key).encode(),
                record.value,
            )
            return Element(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=key,
                key_is_b64=key_is_b64,
                value=value,
                body=body,
            )
    value = None
    if record.value is not None:
        try:
            value = json.loads(record.value, parse_constant=_reject_constant)
        except ValueError:
            value = record.value.decode("utf-8", errors="replace")
    element = ConnectorRecord(
        topic=record.topic, partition=record.partition, offset=record.offset, key=key, value=value
    )
    return Element(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        key_is_b64=key_is_b64,
        value=value,
        body=element.model_dump_json().encode("utf-8"),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)


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
        return b"[" + b",".join(element.body for element in self.elements) + b"]"

    def headers(self) -> dict[str, str]:
        """The headers OpenFaaS's connector sets (for the first record) plus the batch marker."""
        headers = {
            "Content-Type": "application/json",
            "X-Topic": self.topic,
            "X-Kafka-Partition": str(self.partition),
            "X-Kafka-Offset": str(self.first_offset),
            BATCH_HEADER: str(self.count),
        }
        keys = {(element.key, element.key_is_b64) for element in self.elements}
        if len(keys) == 1:
            ((key, key_is_b64),) = keys
            if key is not None:
                headers["X-Kafka-Key"] = key
                if key_is_b64:
                    headers["X-Kafka-Key-Enc"] = "b64"
        return headers

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


def body_size(elements: Sequence[Element]) -> int:
    """Bytes of the JSON array holding ``elements``."""
    return 2 + sum(len(element.body) for element in elements) + max(0, len(elements) - 1)


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
