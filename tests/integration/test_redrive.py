"""The redrive against the real Kafka (and PostgreSQL for its checks): each selected dead letter
sent back once to the start of its stage, the group's offsets and metadata as its memory.

Every test has its own dead-letter, raw and decoded topics, so the groups and records it sees
are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from f2lib.contracts.marks import Marks, Position, Redrive
from f2lib.contracts.records import dead_letter, dump_json
from f2lib.errors import ReplayRefusedError
from f2lib.kafka import make_producer
from infra.local.launch.kafka import KafkaServer
from infra.local.ports import free_port
from infra.tools.redrive.decision import Outcome, RedriveTopics
from infra.tools.redrive.ledger import RunState
from infra.tools.redrive.runner import RedriveOptions, RedriveRun
from infra.tools.redrive.selection import Selection
from infra.tools.redrive.summary import RedriveSummary
from infra.tools.replay.clients import KafkaClients
from tests.kafka_support import read_topic, read_topic_to_end

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TS = "2025-06-01 12:00:00.000000"


def raw_value(device: str, n: int) -> dict[str, Any]:
    payload = json.dumps({"timestamp": TS, "status": n % 2 == 0, "n": n})
    return {"topic": f"cmnd/{device}/access-control-mode/J1/strike-1", "payload": payload,
            "received_at": "2025-06-01T12:00:00+00:00", "qos": 1}  # fmt: skip


def letter(device: str, n: int, stage: str = "decode", reason: str = "unknown_device",
           **fields: Any) -> dict[str, Any]:  # fmt: skip
    value = dead_letter(raw_value(device, n), stage=stage, reason=reason,
                        error=f"{reason} for {device}", key=device,
                        source={"topic": "raw_iot_data", "partition": 0, "offset": n})  # fmt: skip
    return {**value, **fields}


@dataclass
class Topics:
    kafka: KafkaServer
    names: RedriveTopics

    def put(self, letters: list[dict[str, Any]] | list[bytes]) -> list[Position]:
        """Produce the letters (keyed by their device) and return where each landed."""
        producer = make_producer(self.kafka.bootstrap)
        try:
            futures = []
            for item in letters:
                value = item if isinstance(item, bytes) else dump_json(item)
                key = None if isinstance(item, bytes) else item.get("key")
                futures.append(producer.send(self.names.dead_letter, value=value,
                                             key=key.encode() if key else None))  # fmt: skip
            producer.flush(timeout=30)
            done = [f.get(timeout=30) for f in futures]
        finally:
            producer.close(timeout=5)
        return [Position(m.topic, m.partition, m.offset) for m in done]

    def read(self, topic: str, count: int, timeout: float = 20) -> list[Any]:
        return read_topic(self.kafka.bootstrap, topic, lambda rs: len(rs) >= count, timeout)

    def everything(self, topic: str) -> list[Any]:
        """What ``topic`` holds now."""
        return read_topic_to_end(self.kafka.bootstrap, topic)

    def redrive(self, **options: Any) -> RedriveSummary:
        kafka = KafkaClients(self.kafka.bootstrap)
        return RedriveRun(RedriveOptions(**options), self.names, kafka).run()


@pytest.fixture
def topics(kafka: KafkaServer) -> Iterator[Topics]:
    suffix = uuid.uuid4().hex[:8]
    names = RedriveTopics(f"dl_{suffix}", f"raw_{suffix}", f"decoded_{suffix}", f"rp_{suffix}")
    kafka.create_topics([names.dead_letter, *names.inputs], partitions=3)
    yield Topics(kafka, names)
    with kafka.admin() as admin:
        admin.delete_topics([names.dead_letter, *names.inputs])


def device() -> str:
    return f"f2-{uuid.uuid4().hex[:12]}"


def redriven_from(records: list[Any]) -> Counter[Position]:
    """How many records name each dead letter in their f2-redrive header."""
    found: Counter[Position] = Counter()
    for record in records:
        redrive = Marks.from_kafka(record.headers).redrive
        if redrive is not None:
            found[redrive.dead_letter] += 1
    return found


def test_each_letter_goes_to_the_start_of_its_stage_with_its_key_value_and_marks(
    topics: Topics,
) -> None:
    a = device()
    stages = ["bridge", "decode", "sink", "connector:decode", "connector:sink", "command_reply",
              "mystery"]  # fmt: skip
    letters = [letter(a, i, stage=s, reason=f"r{i}") for i, s in enumerate(stages)]
    letters[2]["record"] = {"device_id": a, "value": 1}  # a sink letter holds a measurement
    letters[4]["source"] = {"topic": topics.names.decoded, "partition": 1, "offset": 4}
    letters[5]["source"] = {"topic": topics.names.replies, "partition": 0, "offset": 9}
    where = topics.put([*letters, b"not a dead letter"])

    summary = topics.redrive()
    assert summary.read == 8 and summary.sent == 6
    assert summary.sent_to == {topics.names.raw: 3, topics.names.decoded: 2,
                               topics.names.replies: 1}  # fmt: skip
    assert summary.total(Outcome("no_target")) == 1
    assert summary.total(Outcome("unreadable")) == 1
    raw = topics.read(topics.names.raw, 3)
    decoded = topics.read(topics.names.decoded, 2)
    replies = topics.read(topics.names.replies, 1)
    assert redriven_from(raw) == Counter({where[0]: 1, where[1]: 1, where[3]: 1})
    assert redriven_from(decoded) == Counter({where[2]: 1, where[4]: 1})
    assert redriven_from(replies) == Counter({where[5]: 1})
    for record in raw + decoded + replies:
        assert record.key == a.encode()
        marks = Marks.from_kafka(record.headers)
        assert marks.redrive is not None and marks.redrive.count == 1
        index = where.index(marks.redrive.dead_letter)
        assert json.loads(record.value) == letters[index]["record"]
        assert [f.reason for f in marks.redrive.history] == [f"r{index}"]


def test_a_second_run_sends_nothing_and_new_letters_are_sent_by_the_next_run(
    topics: Topics,
) -> None:
    a = device()
    first = topics.put([letter(a, i) for i in range(30)])
    assert topics.redrive(commit_every=7).sent == 30
    again = topics.redrive()
    assert (again.read, again.sent) == (0, 0)
    later = topics.put([letter(a, i) for i in range(30, 35)])
    third = topics.redrive()
    assert (third.read, third.sent) == (5, 5)
    assert redriven_from(topics.read(topics.names.raw, 35)) == Counter(dict.fromkeys(first + later,
                                                                                     1))  # fmt: skip


def test_a_dry_run_counts_per_stage_and_reason_and_sends_and_commits_nothing(
    topics: Topics,
) -> None:
    a, b = device(), device()
    topics.put([letter(a, 0), letter(a, 1), letter(b, 2, reason="bad_payload"),
                letter(b, 3, stage="sink", reason="invalid_measurement")])  # fmt: skip
    dry = topics.redrive(dry_run=True)
    assert dry.sent == 0
    assert dry.to_json()["by_stage_and_reason"] == [
        {"stage": "decode", "reason": "bad_payload", "would_send": 1},
        {"stage": "decode", "reason": "unknown_device", "would_send": 2},
        {"stage": "sink", "reason": "invalid_measurement", "would_send": 1},
    ]
    assert topics.everything(topics.names.raw) == []
    assert topics.redrive().sent == 4  # the dry run committed nothing


def test_a_selection_takes_its_letters_and_a_wider_one_later_takes_only_the_rest(
    topics: Topics,
) -> None:
    a, b = device(), device()
    where = topics.put([letter(a, 0), letter(b, 1), letter(a, 2, reason="bad_payload"),
                        letter(a, 3), letter(b, 4)])  # fmt: skip
    narrow = topics.redrive(selection=Selection(reason="unknown_device", device=a))
    assert (narrow.read, narrow.sent) == (5, 2)
    assert narrow.group == f"f2pipe-redrive.reason=unknown_device.device={a}"
    wide = topics.redrive()
    assert wide.sent == 3
    assert wide.total(Outcome("already_redriven")) == 2
    assert redriven_from(topics.read(topics.names.raw, 5)) == Counter(dict.fromkeys(where, 1))
    assert topics.redrive(selection=Selection(reason="unknown_device", device=a)).sent == 0


def test_a_letter_at_the_limit_is_reported_and_not_sent(topics: Topics) -> None:
    a = device()
    earlier = {"count": 2, "dead_letter": {"topic": "iot_dead_letter", "partition": 0,
                                           "offset": 1}}  # fmt: skip
    history = [{"stage": "decode", "reason": "unknown_device", "error": "x"}] * 2
    topics.put([letter(a, 0, redrive=earlier, history=history), letter(a, 1)])
    summary = topics.redrive(max_redrives=2)
    assert summary.sent == 1
    assert summary.total(Outcome("at_limit")) == 1
    [listed] = summary.listed
    assert (listed["outcome"], listed["device"], listed["count"]) == ("at_limit", a, 2)
    assert "at_limit" in summary.render()
    higher = topics.redrive(max_redrives=3, group="f2pipe-redrive.limit3")
    assert higher.sent == 1  # a higher limit takes the one the first run stopped at
    assert higher.total(Outcome("already_redriven")) == 1


def test_what_a_stopped_run_sent_after_its_last_commit_is_not_sent_again(topics: Topics) -> None:
    """A run killed between sending and committing leaves exactly this in Kafka: its records in
    the destination after the marks of its last commit, and offsets below what it sent."""
    a = device()
    where = topics.put([letter(a, i) for i in range(20)])
    clients = KafkaClients(topics.kafka.bootstrap)
    consumer = clients.consumer("f2pipe-redrive")
    raw_tps = [TopicPartition(topics.names.raw, p) for p in range(3)]
    decoded_tps = [TopicPartition(topics.names.decoded, p) for p in range(3)]
    marks = consumer.end_offsets(raw_tps + decoded_tps)
    state = RunState(Selection(), 3, done=False, marks=marks).to_metadata()
    dl_tps = [TopicPartition(topics.names.dead_letter, p) for p in range(3)]
    consumer.commit({tp: OffsetAndMetadata(0, state, -1) for tp in dl_tps})
    consumer.close()
    producer = make_producer(topics.kafka.bootstrap)  # what the stopped run had sent
    for position in where[:8]:
        headers = Marks(Redrive(1, position)).kafka_headers()
        producer.send(topics.names.raw, key=a.encode(), value=b"{}", headers=headers)
    producer.flush(timeout=30)
    producer.close(timeout=5)

    summary = topics.redrive()
    assert summary.total(Outcome("already_sent")) == 8
    assert summary.sent == 12
    assert redriven_from(topics.read(topics.names.raw, 20)) == Counter(dict.fromkeys(where, 1))
    assert topics.redrive().sent == 0


def test_a_window_that_aged_out_of_retention_is_refused_before_anything_is_sent(
    topics: Topics,
) -> None:
    a = device()
    where = topics.put([letter(a, i) for i in range(6)])
    since = int(time.time() * 1000) - 60_000
    partition = where[0].partition
    last = max(p.offset for p in where if p.partition == partition)
    with topics.kafka.admin() as admin:  # what retention does to the oldest records
        admin.delete_records({TopicPartition(topics.names.dead_letter, partition): last})
    with pytest.raises(ReplayRefusedError, match="aged out of retention"):
        topics.redrive(selection=Selection(since_ms=since))
    assert topics.everything(topics.names.raw) == []
    later = topics.redrive(selection=Selection(since_ms=int(time.time() * 1000) + 1))
    assert later.read == 0  # a window after the letters: nothing aged out, nothing to send


def test_a_group_reused_with_another_selection_is_refused(topics: Topics) -> None:
    topics.put([letter(device(), 0)])
    assert topics.redrive(group="f2pipe-redrive.mine").sent == 1
    with pytest.raises(ReplayRefusedError, match="belongs to the selection"):
        topics.redrive(group="f2pipe-redrive.mine", selection=Selection(reason="bad_payload"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.tools.redrive", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli__refuses_when_kafka_or_a_database_is_unreachable(
    topics: Topics, devices_db: str, timeseries_db: str
) -> None:
    topics.put([letter(device(), 0)])
    env = {
        "KAFKA_BOOTSTRAP": topics.kafka.bootstrap,
        "DEVICES_DSN": devices_db,
        "TIMESERIES_DSN": timeseries_db,
        "DEAD_LETTER_TOPIC": topics.names.dead_letter,
        "RAW_TOPIC": topics.names.raw,
        "DECODED_TOPIC": topics.names.decoded,
        "COMMAND_REPLIES_TOPIC": topics.names.replies,
        "F2_REPLAY_CONNECT_TIMEOUT_SECONDS": "2",
    }
    closed = f"127.0.0.1:{free_port()}"
    no_kafka = cli({**env, "KAFKA_BOOTSTRAP": closed})
    assert no_kafka.returncode == 2
    assert f"redrive refused: Kafka at {closed} is unreachable" in no_kafka.stderr
    dead_db = f"host=127.0.0.1 port={free_port()} dbname=x user=x password=s3cret"
    no_db = cli({**env, "TIMESERIES_DSN": dead_db})
    assert no_db.returncode == 2
    assert "redrive refused: TIMESERIES_DSN (127.0.0.1:" in no_db.stderr
    assert "s3cret" not in no_db.stderr
    assert topics.everything(topics.names.raw) == []
    dry = cli(env, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["totals"] == {"would_send": 1}
