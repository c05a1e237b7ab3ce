"""Reading a test topic from its beginning, the same way every time.

The consumer takes every partition of the topic by explicit assignment and seeks each to the
beginning: no group, no subscription, no metadata-driven assignment whose timing depends on
the machine's load. ``read_topic`` polls until ``done(records)`` holds or the timeout passes,
then keeps polling ``settle`` seconds more so that records arriving late (duplicates a test
wants to see) are in the answer too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition


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
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            raise AssertionError(f"topic {topic} has no partitions after {timeout:.0f}s")
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
