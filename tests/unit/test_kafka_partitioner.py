"""KeyCachingPartitioner: the default (murmur2) assignment, remembered per key and partition count."""

from __future__ import annotations

from typing import Any

from kafka.partitioner import DefaultPartitioner

from f2lib.kafka import KeyCachingPartitioner


class Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))
        self.lookups = 0

    def topics(self) -> set[str]:
        return {"raw_iot_data"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        self.lookups += 1
        return self.partitions if topic == "raw_iot_data" else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def assign(partitioner: Any, key: bytes | None, cluster: Cluster) -> int:
    return int(partitioner.partition("raw_iot_data", key, key, b"v", b"v", cluster))


def test_keyed_records_go_where_the_default_partitioner_sends_them() -> None:
    cluster = Cluster(6)
    cached, default = KeyCachingPartitioner(), DefaultPartitioner()
    keys = [f"f2-{n:012x}".encode() for n in range(200)]
    assert [assign(cached, k, cluster) for k in keys * 2] == [
        assign(default, k, cluster) for k in keys * 2
    ]


def test_a_new_partition_count_is_not_answered_from_the_cache() -> None:
    cached = KeyCachingPartitioner()
    keys = [f"f2-{n:012x}".encode() for n in range(50)]
    six = [assign(cached, k, Cluster(6)) for k in keys]
    twelve = [assign(cached, k, Cluster(12)) for k in keys]
    assert twelve == [assign(DefaultPartitioner(), k, Cluster(12)) for k in keys]
    assert six != twelve


def test_the_cache_is_bounded() -> None:
    cached = KeyCachingPartitioner(max_keys=10)
    cluster = Cluster(6)
    for n in range(25):
        assign(cached, f"f2-{n:012x}".encode(), cluster)
    assert len(cached._partitions) <= 10


def test_records_without_a_key_still_get_a_partition() -> None:
    cluster = Cluster(6)
    assert assign(KeyCachingPartitioner(), None, cluster) in cluster.partitions
