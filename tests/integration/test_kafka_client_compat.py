"""The pinned kafka-python against the pinned broker for minutes: no protocol-version errors.

Kafka 4.0 removed old protocol versions (KIP-896); kafka-python 2.2.x against 4.0.1 sent
ListOffsets v0 "after some minutes" (dpkp/kafka-python#2679). This test runs what f2pipe
does with Kafka -- a producer, a consumer group that commits and rebalances, and a lag
exporter (group offsets, end offsets, seek_to_end) -- continuously for F2_KAFKA_COMPAT_SECONDS
(default 180). Idle connections are closed after seconds instead of minutes, so reconnects
(and the version negotiation that follows each one) happen many times within the run.
Client logs and the broker's log are scanned for protocol errors.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec

from infra.local.launch.kafka import KafkaServer
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DURATION = float(os.environ.get("F2_KAFKA_COMPAT_SECONDS", "180"))
PARTITIONS = 3
DEVICES = 16
# Short timers so that what a long-running client meets after minutes happens in seconds.
# (kafka-python requires connections_max_idle_ms > request_timeout_ms > fetch_max_wait_ms.)
CLIENT_TIMERS = {
    "connections_max_idle_ms": 8_000,
    "request_timeout_ms": 5_000,
    "metadata_max_age_ms": 15_000,
}
PROTOCOL_TROUBLE = re.compile(
    r"unsupported.?version|UnsupportedVersion|IncompatibleBrokerVersion|InvalidRequest"
    r"|Error parsing request|CorrelationId|ProtocolError|unknown api key|Unknown API",
    re.IGNORECASE,
)


class LogScan(logging.Handler):
    """Keeps every kafka-python log record at INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def messages(
        self, min_level: int = logging.INFO, before: float = float("inf"), since: float = 0.0
    ) -> list[str]:
        """Messages at ``min_level`` or above logged in [since, before) (wall-clock seconds)."""
        with self._lock_records:
            return [
                f"{r.levelname} {r.name}: {r.getMessage()}"
                for r in self.records
                if r.levelno >= min_level and since <= r.created < before
            ]

    def count(self, fragment: str) -> int:
        return sum(fragment in m for m in self.messages())


@pytest.fixture
def client_logs() -> Iterator[LogScan]:
    scan = LogScan()
    kafka_logger = logging.getLogger("kafka")
    previous = kafka_logger.level
    kafka_logger.setLevel(logging.INFO)
    kafka_logger.addHandler(scan)
    yield scan
    kafka_logger.removeHandler(scan)
    kafka_logger.setLevel(previous)


class Shared:
    """State the worker threads share: what was consumed, lag samples, errors."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.consumed: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.commits = 0
        self.lag_samples: list[int] = []
        self.offset_lookups = 0
        self.errors: list[str] = []
        self.stop_producing = threading.Event()
        self.stop_consuming = threading.Event()

    def record(self, values: list[bytes]) -> None:
        with self.lock:
            for value in values:
                body = json.loads(value)
                item = (body["key"], body["seq"])
                if item in self.consumed:
                    self.duplicates += 1
                self.consumed.add(item)

    def guard(self, name: str, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # reported by the test, never swallowed
                with self.lock:
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                self.stop_producing.set()

        return run


def _consumer(kafka: KafkaServer, **config: Any) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=kafka.bootstrap, **CLIENT_TIMERS, **config)


def _group_member(
    kafka: KafkaServer,
    topic: str,
    group: str,
    shared: Shared,
    until: threading.Event,
    name: str,
) -> Callable[[], None]:
    def work() -> None:
        consumer = _consumer(
            kafka,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=200,
        )
        consumer.subscribe([topic])
        try:
            next_lookup = time.monotonic() + 5
            while not until.is_set() and not shared.stop_consuming.is_set():
                batch = consumer.poll(timeout_ms=500)
                values = [m.value for messages in batch.values() for m in messages]
                if values:
                    shared.record(values)
                    consumer.commit()
                    with shared.lock:
                        shared.commits += 1
                if time.monotonic() >= next_lookup and consumer.assignment():
                    # What a consumer does to report its own lag.
                    assigned = sorted(consumer.assignment())
                    ends = consumer.end_offsets(assigned)
                    for tp in assigned:
                        position = consumer.position(tp)
                        committed = consumer.committed(tp)
                        assert ends[tp] >= position >= (committed or 0)
                    consumer.offsets_for_times(
                        {tp: int(time.time() * 1000) - 20_000 for tp in assigned}
                    )
                    with shared.lock:
                        shared.offset_lookups += 1
                    next_lookup = time.monotonic() + 7
        finally:
            consumer.close()

    return work


def _lag_exporter(kafka: KafkaServer, topic: str, group: str, shared: Shared) -> Callable[[], None]:
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def work() -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap, client_id="lag-exporter", **CLIENT_TIMERS
        )
        try:
            probe = _consumer(kafka, client_id="lag-probe", enable_auto_commit=False)
            try:
                probe.assign(partitions)
                export(admin, probe)
            finally:
                probe.close()
        finally:
            admin.close()

    def export(admin: KafkaAdminClient, probe: KafkaConsumer) -> None:
        gaps = (2.0, 5.0, 11.0, 3.0, 14.0)  # some longer than the idle timeout: reconnects
        for n in itertools.count():
            if shared.stop_consuming.wait(gaps[n % len(gaps)]):
                return
            committed = admin.list_group_offsets(group).get(group, {})
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
            lag = sum(
                ends[tp].offset - (committed[tp].offset if tp in committed else 0)
                for tp in partitions
            )
            probe.seek_to_end(*partitions)
            probe_ends = {tp: probe.position(tp) for tp in partitions}
            probe.seek_to_beginning(*partitions)
            starts = {tp: probe.position(tp) for tp in partitions}
            assert all(probe_ends[tp] >= ends[tp].offset >= starts[tp] for tp in partitions)
            assert probe.end_offsets(partitions)[partitions[0]] >= ends[partitions[0]].offset
            with shared.lock:
                shared.lag_samples.append(lag)
                shared.offset_lookups += 1

    return work


def _list_offsets_v0(port: int) -> bytes:
    """Send a raw ListOffsets v0 request (removed in Kafka 4.0) and return what comes back."""
    client_id = b"compat-probe"
    header = struct.pack(">hhih", 2, 0, 7, len(client_id)) + client_id
    body = struct.pack(">ii", -1, 0)  # replica_id, empty topics array
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        try:
            return sock.recv(64)
        except OSError:
            return b""


def test_broker_log__reports_a_removed_protocol_version_the_scan_matches(
    kafka: KafkaServer,
) -> None:
    log_start = kafka.log_path.stat().st_size
    answer = _list_offsets_v0(kafka.port)

    def troubles() -> list[str]:
        new_lines = kafka.log_path.read_text(errors="replace")[log_start:].splitlines()
        return [line for line in new_lines if PROTOCOL_TROUBLE.search(line)]

    trouble = wait_for(troubles, timeout=10, interval=0.2, message="the broker logged nothing")
    assert answer == b""  # the broker closes the connection instead of answering
    assert any("ListOffsets" in line for line in trouble), trouble


@pytest.mark.slow
def test_pinned_client__runs_minutes_against_pinned_broker_without_protocol_errors(
    kafka: KafkaServer, client_logs: LogScan
) -> None:
    topic = f"compat_{uuid.uuid4().hex[:10]}"
    group = f"compat-group-{uuid.uuid4().hex[:6]}"
    kafka.create_topics([topic], partitions=PARTITIONS)
    broker_log_start = kafka.log_path.stat().st_size
    shared = Shared()
    started = time.monotonic()

    second_member_leaves = threading.Event()
    threads = [
        threading.Thread(
            target=shared.guard(
                "member-1",
                _group_member(kafka, topic, group, shared, shared.stop_consuming, "member-1"),
            )
        ),
        threading.Thread(
            target=shared.guard("lag-exporter", _lag_exporter(kafka, topic, group, shared))
        ),
    ]
    for thread in threads:
        thread.start()

    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        acks="all",
        linger_ms=10,
        client_id="compat-producer",
        **CLIENT_TIMERS,
    )
    futures = []
    seq = 0
    member_2: threading.Thread | None = None
    while time.monotonic() - started < DURATION and not shared.stop_producing.is_set():
        elapsed = time.monotonic() - started
        if member_2 is None and elapsed > DURATION / 3:  # a rebalance while records flow
            member_2 = threading.Thread(
                target=shared.guard(
                    "member-2",
                    _group_member(kafka, topic, group, shared, second_member_leaves, "member-2"),
                )
            )
            member_2.start()
        if member_2 is not None and elapsed > 2 * DURATION / 3:
            second_member_leaves.set()
        if int(elapsed) % 60 >= 45:  # the producer idles 15 s a minute: its connection closes
            time.sleep(0.5)
            continue
        for _ in range(10):
            key = f"f2-{seq % DEVICES:012x}"
            value = json.dumps({"key": key, "seq": seq}).encode()
            futures.append(((key, seq), producer.send(topic, key=key.encode(), value=value)))
            seq += 1
        time.sleep(0.1)
    producer.flush(timeout=30)
    produced = set()
    for item, future in futures:
        future.get(timeout=30)
        produced.add(item)
    run_seconds = time.monotonic() - started

    def drained() -> bool:
        with shared.lock:
            return bool(shared.errors) or produced <= shared.consumed

    wait_for(
        drained,
        timeout=60,
        interval=0.5,
        message=lambda: f"{len(produced - shared.consumed)} records never consumed",
    )
    # The lag exporter's next sample (after the last commit) reads no lag left.
    with shared.lock:
        samples_before = len(shared.lag_samples)

    def last_lag_sampled() -> bool:
        with shared.lock:
            fresh = shared.lag_samples[samples_before:]
            return bool(shared.errors) or (bool(fresh) and fresh[-1] == 0)

    wait_for(last_lag_sampled, timeout=60, interval=0.5, message="no lag sample 0 after the drain")
    # From here on the clients close; kafka-python may log in-flight requests it cancels.
    closing_at = time.time()
    producer.close()
    shared.stop_consuming.set()
    second_member_leaves.set()
    for thread in [*threads, *([member_2] if member_2 else [])]:
        thread.join(timeout=60)

    broker_log = kafka.log_path.read_text(errors="replace")[broker_log_start:]
    broker_trouble = [line for line in broker_log.splitlines() if PROTOCOL_TROUBLE.search(line)]
    broker_errors = [line for line in broker_log.splitlines() if "] ERROR " in line]
    client_trouble = [m for m in client_logs.messages() if PROTOCOL_TROUBLE.search(m)]
    client_errors = client_logs.messages(logging.ERROR, before=closing_at)
    errors_while_closing = client_logs.messages(logging.ERROR, since=closing_at)
    warnings = Counter(re.sub(r"\d+", "N", m)[:140] for m in client_logs.messages(logging.WARNING))
    with shared.lock:
        missing = produced - shared.consumed
        summary = {
            "run_seconds": round(run_seconds, 1),
            "produced": len(produced),
            "consumed": len(shared.consumed),
            "duplicates": shared.duplicates,
            "commits": shared.commits,
            "offset_lookups": shared.offset_lookups,
            "lag_samples": len(shared.lag_samples),
            "max_lag": max(shared.lag_samples, default=None),
            "last_lag": shared.lag_samples[-1] if shared.lag_samples else None,
            "idle_closes": client_logs.count("Closing idle connection"),
            "connections": client_logs.count(": Connected"),
            "client_warnings": dict(warnings),
            "client_errors_while_closing": errors_while_closing,
        }
    print(f"\nkafka client compat summary: {json.dumps(summary, indent=1)}")

    assert shared.errors == []
    assert client_trouble == [], client_trouble[:20]
    assert broker_trouble == [], broker_trouble[:20]
    assert client_errors == [], client_errors[:20]
    assert broker_errors == [], broker_errors[:20]
    assert not missing, f"{len(missing)} records never consumed, e.g. {sorted(missing)[:5]}"
    assert run_seconds >= DURATION * 0.95
    assert summary["idle_closes"] > 0  # the reconnect path was exercised
    assert summary["connections"] > summary["idle_closes"]
    assert summary["lag_samples"] >= DURATION / 10
    assert summary["last_lag"] == 0
