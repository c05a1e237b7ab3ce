"""Kafka as tests look at it: a topic read from its beginning, a consumer group's lag.

The reading consumer takes every partition of the topic by explicit assignment and seeks each
to the beginning: no group, no subscription, no metadata-driven assignment whose timing depends
on the machine's load. ``read_topic`` polls until ``done(records)`` holds or the timeout passes
(``settle`` seconds more if asked; a sentinel the test waits for is the better signal);
``read_topic_to_end`` reads what the topic holds when it is called.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from tests.waiting import wait_for


def read_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout: float = 60,
    settle: float = 0,
) -> list[Any]:
    """Every record of ``topic`` from offset 0, until ``done(records)`` (then ``settle`` s more)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        partitions: set[int] = wait_for(
            lambda: consumer.partitions_for_topic(topic),
            timeout=timeout,
            interval=0.2,
            message=f"topic {topic} has no partitions",
        )
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        while time.monotonic() < deadline and not done(records):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        quiet_until = time.monotonic() + settle
        while time.monotonic() < quiet_until:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The offset after the last record of each partition of ``topic``, now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(topic), 30, 0.2, f"topic {topic} unknown"
        )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: int(end) for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic_to_end(bootstrap: str, topic: str, timeout: float = 60) -> list[Any]:
    """Every record ``topic`` holds when this is called (read until each partition's end)."""
    ends = end_offsets(bootstrap, topic)

    def at_end(records: list[Any]) -> bool:
        last: dict[int, int] = {}
        for record in records:
            last[record.partition] = max(last.get(record.partition, -1), record.offset)
        return all(last.get(p, -1) + 1 >= end for p, end in ends.items() if end > 0)

    records = read_topic(bootstrap, topic, at_end, timeout)
    assert at_end(records), f"{topic} not read to its end {ends} within {timeout:.0f}s"
    return records


def uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that consumer group ``group`` has not committed yet (its lag)."""
    ends = end_offsets(bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="f2pipe-tests")
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    lag = 0
    for partition, end in ends.items():
        meta = committed.get(TopicPartition(topic, partition))
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, end - done)
    return lag
