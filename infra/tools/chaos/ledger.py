"""One scenario's workload and its verdict: per message, what the broker acknowledged to the
publisher against what PostgreSQL holds, plus the copies in Kafka and the dead letters.

Messages are told apart by their natural key: every device's timestamps strictly increase
(the simulator's message stream), so (device, topic, timestamp) names one message, and its
rows are those of ``iot_measurements`` with that device, topic and time (one per measurement).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2
from kafka import KafkaConsumer, TopicPartition

from f2lib.contracts.topics import device_key
from f2lib.models import parse_timestamp
from infra.tools.bench.workload import (
    Fleet,
    device_ids,
    load_components,
    messages,
    register_devices,
)
from infra.tools.chaos.publisher import PublishOutcome
from infra.tools.simulator.payloads import Message

DEVICES_PER_OFFSET = 10_000  # scenario n uses device numbers n * 10 000 + 0..devices-1
MessageKey = tuple[str, str, datetime]


def key_of(message: Message) -> MessageKey:
    return device_key(message.topic) or "", message.topic, parse_timestamp(message.timestamp)


@dataclass(frozen=True)
class Workload:
    """The devices of one scenario (registered, their own) and the messages they send."""

    devices: list[str]
    messages: list[Message]

    def wire(self) -> list[tuple[str, bytes]]:
        return [(m.topic, m.payload) for m in self.messages]


def prepare(devices_dsn: str, index: int, devices: int, count: int, seed: int) -> Workload:
    """Register scenario ``index``'s devices and make its ``count`` messages."""
    ids = device_ids(devices, offset=index * DEVICES_PER_OFFSET)
    register_devices(devices_dsn, ids)
    fleet = Fleet(load_components(devices_dsn, [d for d, _ in ids]))
    stream = messages(fleet, seed + index)
    return Workload(fleet.devices, list(itertools.islice(stream, count)))


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: int(offset) for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_since(bootstrap: str, topic: str, start: dict[int, int]) -> list[Any]:
    """The records of ``topic`` from the offsets ``start`` to its end now."""
    end = end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False
    )
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in end if end[p] > start.get(p, 0)]
        if not tps:
            return records
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        left = {tp.partition for tp in tps}
        while left:
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                records.extend(r for r in batch if r.offset < end[tp.partition])
                if batch and batch[-1].offset >= end[tp.partition] - 1:
                    left.discard(tp.partition)
    finally:
        consumer.close()
    return records


@dataclass(frozen=True)
class StoredRows:
    """Rows of the scenario's devices by message key: how many, and when the last committed."""

    counts: dict[MessageKey, int]
    committed: dict[MessageKey, float]  # the latest ingested_at (epoch seconds) per key
    ingested: list[float]  # every row's ingested_at, sorted

    @classmethod
    def read(cls, dsn: str, devices: Sequence[str]) -> StoredRows:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT device_id, topic, time, count(*), extract(epoch FROM max(ingested_at)),"
                " array_agg(extract(epoch FROM ingested_at)) FROM iot_measurements"
                " WHERE device_id = ANY(%s) GROUP BY device_id, topic, time",
                (list(devices),),
            )
            rows = cur.fetchall()
        conn.close()
        counts = {(d, t, ts): int(n) for d, t, ts, n, _, _ in rows}
        committed = {(d, t, ts): float(last) for d, t, ts, _, last, _ in rows}
        ingested = sorted(float(x) for *_, each in rows for x in each)
        return cls(counts, committed, ingested)


@dataclass
class Verdict:
    """What one scenario did to the data."""

    messages: int
    acknowledged: int
    stored: int  # acknowledged messages with all their rows
    lost: int  # acknowledged, without all their rows
    unacknowledged_stored: int  # the publisher got no PUBACK, the rows are there anyway
    raw_duplicates: int  # extra copies in raw_iot_data (absorbed by the natural key)
    stored_duplicates: int  # rows beyond a message's measurements (0 by the natural key)
    dead_letters: int  # every message is valid: each dead letter is a mistake
    drain_s: float  # from the last publish to the last acknowledged message's rows
    stall_s: float  # the longest time no row was committed while traffic was owed
    lost_examples: list[str] = field(default_factory=list)


def judge(
    workload: Workload,
    outcome: PublishOutcome,
    rows: StoredRows,
    raw: Iterable[Any] = (),
    letters: Iterable[Any] = (),
) -> Verdict:
    keys = [key_of(m) for m in workload.messages]
    stored = lost = unacked_stored = extra_rows = 0
    examples: list[str] = []
    last_commit = outcome.first_publish
    for message, key, acked in zip(workload.messages, keys, outcome.acked, strict=True):
        found = rows.counts.get(key, 0)
        extra_rows += max(0, found - message.measurements)
        complete = found >= message.measurements
        if acked and complete:
            stored += 1
            last_commit = max(last_commit, rows.committed[key])
        elif acked:
            lost += 1
            if len(examples) < 5:
                examples.append(f"{message.topic} {message.timestamp} ({found} rows)")
        elif complete:
            unacked_stored += 1
    wanted = set(keys)
    copies: Counter[MessageKey] = Counter()
    for record in raw:
        found_key = _raw_key(record)
        if found_key is not None and found_key in wanted:
            copies[found_key] += 1
    devices = {d.encode() for d in workload.devices}
    dead = sum(1 for letter in letters if letter.key in devices)
    return Verdict(
        messages=len(workload.messages),
        acknowledged=outcome.acknowledged,
        stored=stored,
        lost=lost,
        unacknowledged_stored=unacked_stored,
        raw_duplicates=sum(n - 1 for n in copies.values() if n > 1),
        stored_duplicates=extra_rows,
        dead_letters=dead,
        drain_s=max(0.0, last_commit - outcome.last_publish),
        stall_s=_longest_gap(outcome.first_publish, rows.ingested),
        lost_examples=examples,
    )


def _raw_key(record: Any) -> MessageKey | None:
    try:
        value = json.loads(record.value)
        payload = json.loads(value["payload"])
        topic = value["topic"]
        return device_key(topic) or "", topic, parse_timestamp(payload["timestamp"])
    except (ValueError, KeyError, TypeError):
        return None


def _longest_gap(start: float, moments: Sequence[float]) -> float:
    gaps = [b - a for a, b in itertools.pairwise([start, *moments])]
    return max(gaps, default=0.0)
