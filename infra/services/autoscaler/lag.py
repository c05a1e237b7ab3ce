"""Consumer-group lag read from Kafka with kafka-python's admin client.

Lag of a partition = its end offset - the group's committed offset. A partition the group never
committed counts from the partition's earliest offset: the connector starts new groups at
``earliest``, so those records are still to be delivered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.protocol.consumer import OffsetSpec

from f2lib.errors import StreamError
from f2lib.kafka import AdminFactory, LazyAdmin

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a group's topic: end offset, committed offset (None: never) and lag."""

    topic: str
    partition: int
    end: int
    committed: int | None
    lag: int


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group's lag over the partitions of its topics."""

    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


class LagReader(Protocol):
    """Reads the lag of consumer groups over their topics."""

    def read(self, groups: Mapping[str, Sequence[str]]) -> dict[str, GroupLag]:
        """Lag per group of ``{group: topics}``; a group that cannot be read is left out."""
        ...

    def close(self) -> None: ...


class KafkaLagReader:
    """Reads lag with one long-lived admin client, rebuilt after a failure."""

    def __init__(self, admin_factory: AdminFactory) -> None:
        self._admin = LazyAdmin(admin_factory)
        self._lock = threading.Lock()

    def read(self, groups: Mapping[str, Sequence[str]]) -> dict[str, GroupLag]:
        with self._lock:
            try:
                return self._read(groups)
            except KafkaError as exc:
                self._admin.reset()
                raise StreamError(f"cannot read consumer lag: {type(exc).__name__}: {exc}") from exc
            except OSError as exc:
                self._admin.reset()
                raise StreamError(f"cannot reach Kafka: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._admin.reset()

    def _read(self, groups: Mapping[str, Sequence[str]]) -> dict[str, GroupLag]:
        admin = self._admin.get()
        topics = sorted({t for ts in groups.values() for t in ts})
        if not topics:
            return {}
        partitions = self._partitions(admin, topics)
        every = [tp for t in topics for tp in partitions.get(t, [])]
        ends = self._offsets(admin, every, OffsetSpec.LATEST) if every else {}
        earliest: dict[TopicPartition, int] | None = None
        result: dict[str, GroupLag] = {}
        for group, group_topics in groups.items():
            tps = [tp for t in dict.fromkeys(group_topics) for tp in partitions.get(t, [])]
            try:
                committed = self._committed(admin, group, tps)
            except KafkaError as exc:
                logger.warning("group %s: committed offsets unavailable: %s", group, exc)
                continue
            if earliest is None and any(tp not in committed for tp in tps):
                earliest = self._offsets(admin, every, OffsetSpec.EARLIEST)
            rows = []
            for tp in tps:
                end = ends.get(tp, 0)
                done = committed.get(tp)
                start = done if done is not None else (earliest or {}).get(tp, 0)
                rows.append(PartitionLag(tp.topic, tp.partition, end, done, max(0, end - start)))
            result[group] = GroupLag(group, tuple(rows))
        return result

    @staticmethod
    def _partitions(admin: Any, topics: list[str]) -> dict[str, list[TopicPartition]]:
        found: dict[str, list[TopicPartition]] = {}
        for topic in admin.describe_topics(topics):
            name = topic.get("name")
            if topic.get("error_code", 0) != 0 or not name:
                logger.warning("topic %s: metadata error %s", name, topic.get("error_code"))
                continue
            indexes = sorted(p["partition_index"] for p in topic.get("partitions") or [])
            found[name] = [TopicPartition(name, i) for i in indexes]
        return found

    @staticmethod
    def _offsets(
        admin: Any, tps: list[TopicPartition], spec: OffsetSpec
    ) -> dict[TopicPartition, int]:
        answer = admin.list_partition_offsets(dict.fromkeys(tps, spec))
        return {tp: int(found.offset) for tp, found in answer.items()}

    @staticmethod
    def _committed(admin: Any, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        answer = admin.list_group_offsets({group: tps}).get(group) or {}
        return {tp: int(meta.offset) for tp, meta in answer.items() if meta.offset >= 0}
