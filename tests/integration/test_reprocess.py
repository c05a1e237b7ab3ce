"""The reprocess against the real Kafka and PostgreSQL: the window found by timestamp, the device's
originals copied back marked, and the refusals (aged out, unknown device, unreachable) that send
nothing. The whole path through decode and sink is in tests/e2e/test_redrive_reprocess.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from kafka import TopicPartition

from f2lib.contracts.marks import Marks, Position, Reprocess
from f2lib.errors import ReplayIncompleteError, ReplayRefusedError
from f2lib.kafka import make_producer
from infra.local.launch.kafka import KafkaServer
from infra.local.ports import free_port
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.positions import key_partition
from infra.tools.replay.window import TimeWindow
from infra.tools.reprocess.rows import RowReader
from infra.tools.reprocess.runner import (
    PipelineGroups,
    ReprocessOptions,
    ReprocessRun,
    ReprocessSummary,
    ReprocessTopics,
)
from tests.kafka_support import read_topic_to_end

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO = "f2-e4fd45f654be"  # has parameters in the demo devices database


def raw_value(device: str, n: int) -> bytes:
    payload = json.dumps({"timestamp": f"2025-06-01 12:00:{n:02d}.000000", "data": "00fa"})
    return json.dumps({"topic": f"cmnd/{device}/sensor-mode/J3/sensor-3", "payload": payload,
                       "qos": 1}).encode()  # fmt: skip


@dataclass
class Raw:
    kafka: KafkaServer
    topics: ReprocessTopics
    timeseries_db: str

    def put(
        self,
        device: str,
        count: int,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        producer = make_producer(self.kafka.bootstrap)
        try:
            for n in range(count):
                producer.send(self.topics.raw, key=device.encode(), value=raw_value(device, n),
                              headers=headers or [], timestamp_ms=timestamp_ms)  # fmt: skip
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=5)

    def run(self, device: str, since_ms: int, **options: Any) -> ReprocessSummary:
        options.setdefault("wait_timeout_s", 1.0)
        groups = PipelineGroups(f"nobody-{uuid.uuid4().hex[:6]}", "nobody-sink")
        rows = RowReader(lambda: psycopg2.connect(self.timeseries_db))
        run = ReprocessRun(ReprocessOptions(device, TimeWindow(since_ms), **options), self.topics,
                           groups, KafkaClients(self.kafka.bootstrap), rows)  # fmt: skip
        return run.run()


@pytest.fixture
def raw(kafka: KafkaServer, timeseries_db: str) -> Iterator[Raw]:
    suffix = uuid.uuid4().hex[:8]
    topics = ReprocessTopics(f"raw_{suffix}", f"decoded_{suffix}", f"dl_{suffix}")
    kafka.create_topics([topics.raw, topics.decoded, topics.dead_letter], partitions=3)
    yield Raw(kafka, topics, timeseries_db)
    with kafka.admin() as admin:
        admin.delete_topics([topics.raw, topics.decoded, topics.dead_letter])


def device() -> str:
    return f"f2-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def test_a_dry_run_reads_only_the_devices_originals_in_the_window(raw: Raw) -> None:
    a, b = device(), device()
    since = now_ms()
    raw.put(a, 3, timestamp_ms=since - 1000)  # before the window
    raw.put(a, 5)
    raw.put(b, 4)
    raw.put(a, 2, Marks(reprocess=Reprocess("earlier")).kafka_headers())
    summary = raw.run(a, since, dry_run=True)
    assert (summary.read, summary.copies_skipped, summary.sent) == (5, 2, 0)
    assert "read 5 raw record(s) (2 copies of earlier reprocesses skipped)" in summary.render()
    assert len(read_topic_to_end(raw.kafka.bootstrap, raw.topics.raw)) == 14


def test_the_copies_keep_key_value_and_order_and_name_their_original(raw: Raw) -> None:
    a = device()
    since = now_ms() - 1
    raw.put(a, 6)
    with pytest.raises(ReplayIncompleteError, match="is the connector running") as failed:
        raw.run(a, since)
    summary = failed.value.summary
    assert isinstance(summary, ReprocessSummary) and summary.sent == 6
    records = read_topic_to_end(raw.kafka.bootstrap, raw.topics.raw)
    partition = key_partition(a, 3)
    assert {r.partition for r in records} == {partition}
    originals, copies = records[:6], records[6:]
    assert [c.value for c in copies] == [o.value for o in originals]
    assert {c.key for c in copies} == {a.encode()}
    marks = [Marks.from_kafka(c.headers).reprocess for c in copies]
    assert {m.run for m in marks if m} == {summary.run}
    assert [m.source for m in marks if m] == [
        Position(raw.topics.raw, partition, o.offset) for o in originals
    ]


def test_a_window_that_aged_out_of_the_raw_topic_is_refused_before_anything_is_sent(
    raw: Raw,
) -> None:
    a = device()
    since = now_ms() - 60_000
    raw.put(a, 4)
    tp = TopicPartition(raw.topics.raw, key_partition(a, 3))
    with raw.kafka.admin() as admin:  # what retention does to the oldest records
        admin.delete_records({tp: 2})
    with pytest.raises(ReplayRefusedError, match="aged out of retention"):
        raw.run(a, since)
    assert len(read_topic_to_end(raw.kafka.bootstrap, raw.topics.raw)) == 2


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.tools.reprocess", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli__refuses_an_unknown_device_a_bad_id_and_unreachable_services(
    raw: Raw, devices_db: str, timeseries_db: str
) -> None:
    env = {
        "KAFKA_BOOTSTRAP": raw.kafka.bootstrap,
        "DEVICES_DSN": devices_db,
        "TIMESERIES_DSN": timeseries_db,
        "RAW_TOPIC": raw.topics.raw,
        "DECODED_TOPIC": raw.topics.decoded,
        "DEAD_LETTER_TOPIC": raw.topics.dead_letter,
        "F2_REPLAY_CONNECT_TIMEOUT_SECONDS": "2",
    }
    unknown = device()
    raw.put(unknown, 2)
    refused = cli(env, "--device", unknown, "--since", "1h")
    assert refused.returncode == 2
    assert f"reprocess refused: {unknown} has no decoding parameters" in refused.stderr
    assert cli(env, "--device", "f2-nothex", "--since", "1h").returncode == 2
    closed = f"127.0.0.1:{free_port()}"
    no_kafka = cli({**env, "KAFKA_BOOTSTRAP": closed}, "--device", DEMO, "--since", "1h")
    assert (no_kafka.returncode, "is unreachable" in no_kafka.stderr) == (2, True)
    no_db = cli({**env, "DEVICES_DSN": f"host=127.0.0.1 port={free_port()} dbname=x user=x"},
                "--device", DEMO, "--since", "1h")  # fmt: skip
    assert no_db.returncode == 2 and "DEVICES_DSN (127.0.0.1:" in no_db.stderr
    assert len(read_topic_to_end(raw.kafka.bootstrap, raw.topics.raw)) == 2  # nothing was sent
    dry = cli(env, "--device", DEMO, "--since", "1h", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["read"] == 0
