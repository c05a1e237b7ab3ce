"""Partitions of a topic, their bounds, offsets found by time, reading a range of offsets, and
the check that a window has not aged out of the topic's retention."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from f2lib.errors import ReplayRefusedError, StreamError
from infra.tools.replay.window import iso_ms

logger = logging.getLogger(__name__)

Ranges = Mapping[TopicPartition, tuple[int, int]]
STALL_LIMIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Bounds:
    """A partition's first and next offsets, and the timestamp of its first record."""

    beginning: int
    end: int
    earliest_ms: int | None

    @property
    def trimmed(self) -> bool:
        """True when records were deleted from the start (retention, or deleted records)."""
        return self.beginning > 0


def key_partition(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner (Java's murmur2) gives ``key``."""
    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def partitions_of(consumer: Any, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        raise StreamError(f"topic {topic} has no partitions")
    return [TopicPartition(topic, p) for p in sorted(found)]


def bounds(consumer: Any, tps: list[TopicPartition]) -> dict[TopicPartition, Bounds]:
    beginnings = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    first = consumer.offsets_for_times(dict.fromkeys(tps, 0))
    return {
        tp: Bounds(int(beginnings[tp]), int(ends[tp]), first[tp].timestamp if first[tp] else None)
        for tp in tps
    }


def offsets_at(
    consumer: Any, tps: list[TopicPartition], ms: int, ends: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The first offset of each partition whose timestamp is ``ms`` or later (else its end)."""
    found = consumer.offsets_for_times(dict.fromkeys(tps, ms))
    return {tp: int(found[tp].offset) if found[tp] else int(ends[tp]) for tp in tps}


def retention_of(admin: Any, topic: str) -> int | None:
    """The topic's ``retention.ms`` (None when unknown or unlimited)."""
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms"])],
            config_filter="all",
        )
    except KafkaError as exc:
        logger.debug("retention of %s not known: %s", topic, exc)
        return None
    by_topic: dict[str, Any] = next(iter(described.values()), {})
    entry = (by_topic.get(topic) or {}).get("retention.ms") or {}
    try:
        value = int(str(entry.get("value")))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def aged_out(found: Bounds, since_ms: int, retention_ms: int | None, now_ms: int) -> bool:
    """True when records at ``since_ms`` or later may have been deleted already: the partition
    lost its first records and now starts after ``since_ms`` (or, empty, the retention does)."""
    if not found.trimmed:
        return False
    if found.earliest_ms is not None:
        return found.earliest_ms > since_ms
    return retention_ms is not None and since_ms < now_ms - retention_ms


def check_window(
    topic: str,
    found: Mapping[TopicPartition, Bounds],
    since_ms: int,
    retention_ms: int | None,
    now_ms: int,
) -> None:
    """ReplayRefusedError when the window starting at ``since_ms`` aged out of ``topic``."""
    lost = [tp for tp, b in found.items() if aged_out(b, since_ms, retention_ms, now_ms)]
    if not lost:
        return
    earliest = [ms for tp in lost if (ms := found[tp].earliest_ms) is not None]
    keeps = f" (the oldest left is from {iso_ms(min(earliest))})" if earliest else ""
    partitions = ", ".join(str(tp.partition) for tp in lost)
    raise ReplayRefusedError(
        f"the window starts at {iso_ms(since_ms)}, but {topic} partition(s) {partitions} no"
        f" longer hold records that old{keeps}: the window aged out of retention"
    )


def read_range(consumer: Any, ranges: Ranges, poll_ms: int = 500) -> Iterator[Any]:
    """The records of each partition from ``start`` to before ``stop``, in offset order.

    The consumer is assigned exactly these partitions; one that reached its stop is paused.
    """
    pending = {tp: rng for tp, rng in ranges.items() if rng[0] < rng[1]}
    consumer.assign(list(ranges))
    for tp, (start, _) in ranges.items():
        consumer.seek(tp, start)
    done = [tp for tp in ranges if tp not in pending]
    if done:
        consumer.pause(*done)
    heard = time.monotonic()
    while pending:
        fetched = consumer.poll(timeout_ms=poll_ms)
        for tp, records in fetched.items():
            if tp not in pending:
                continue
            stop = pending[tp][1]
            for record in records:
                if record.offset < stop:
                    heard = time.monotonic()
                    yield record
        for tp in list(pending):
            if consumer.position(tp) >= pending[tp][1]:
                del pending[tp]
                consumer.pause(tp)
        if pending and time.monotonic() - heard > STALL_LIMIT_S:
            raise StreamError(f"no records from {sorted(pending)} for {STALL_LIMIT_S:.0f}s")
