"""The reply function's core: which records are replies, and what becomes a dead letter."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from bridge.service import route_message
from command_reply.audit import Recorded
from command_reply.handler import CommandReplyConfig, CommandReplyFunction
from command_reply.replies import DeviceReply, read_batch, read_reply, refusal
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import RawRecord
from f2lib.metrics import FunctionMetrics

DEVICE = "f2-a1b2c3d4e5f6"
COMMAND = str(uuid.uuid4())


def reply_record(
    payload: Any = None, topic: str = f"ctrl-resp/{DEVICE}", key: str | None = DEVICE
) -> ConnectorRecord:
    body = payload if payload is not None else {"command_id": COMMAND, "result": "ok"}
    text = body if isinstance(body, str) else json.dumps(body)
    raw = RawRecord(topic=topic, payload=text, received_at="2026-12-01T10:00:01.5+00:00")
    return ConnectorRecord(
        topic="iot_command_replies", partition=0, offset=7, key=key, value=raw.model_dump()
    )


def test_read_reply__takes_device_from_topic_and_time_from_the_bridge() -> None:
    found = read_reply(reply_record({"command_id": COMMAND, "result": "expired", "detail": "late"}))
    assert found.device_id == DEVICE
    assert (found.reply.command_id, found.reply.result, found.reply.detail) == (
        COMMAND,
        "expired",
        "late",
    )
    assert found.answered_at == dt.datetime(2026, 12, 1, 10, 0, 1, 500000, tzinfo=dt.UTC)


def test_the_bridges_reply_record_is_what_the_reply_function_reads() -> None:
    payload = json.dumps({"command_id": COMMAND, "result": "ok"}).encode()
    routed = route_message(
        f"ctrl-resp/{DEVICE}",
        payload,
        1,
        raw_topic="raw",
        dead_letter_topic="dlq",
        replies_topic="iot_command_replies",
    )
    assert (routed.kind, routed.topic, routed.key) == (
        "reply",
        "iot_command_replies",
        b"f2-a1b2c3d4e5f6",
    )
    record = ConnectorRecord(key=DEVICE, value=json.loads(routed.value))
    assert read_reply(record).reply.command_id == COMMAND


def test_bridge__dead_letters_a_malformed_reply_topic_and_keeps_uplink_routing() -> None:
    kwargs = {"raw_topic": "raw", "dead_letter_topic": "dlq", "replies_topic": "replies"}
    bad = route_message(f"ctrl-resp/{DEVICE}/extra", b"{}", 1, **kwargs)
    assert (bad.kind, bad.reason) == ("dead_letter", "bad_topic")
    up = route_message(f"cmnd/{DEVICE}/alarm-mode/J2/siren-1", b"{}", 1, **kwargs)
    assert (up.kind, up.topic) == ("raw", "raw")
    unconfigured = route_message(
        f"ctrl-resp/{DEVICE}", b"{}", 1, raw_topic="raw", dead_letter_topic="dlq"
    )
    assert unconfigured.kind == "dead_letter"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (reply_record("not json"), "bad_reply"),
        (reply_record({"command_id": COMMAND, "result": "maybe"}), "bad_reply"),
        (reply_record(topic=f"ctrl-resp/{DEVICE}/x"), "bad_topic"),
        (reply_record(topic=f"cmnd/{DEVICE}/alarm-mode/J2/siren-1"), "bad_topic"),
        (reply_record(key="f2-000000000001"), "bad_reply"),
        (ConnectorRecord(key=DEVICE, value="text"), "bad_reply"),
        (ConnectorRecord(key=DEVICE, value={"topic": 1}), "bad_reply"),
    ],
)
def test_read_batch__dead_letters_what_is_not_a_reply(record: ConnectorRecord, reason: str) -> None:
    batch = read_batch([record, reply_record()])
    assert len(batch.replies) == 1
    (letter,) = batch.dead_letters
    assert (letter.stage, letter.reason) == ("command_reply", reason)
    assert letter.to_value()["source"] == record.source()


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [("unknown_command", "unknown_command"), ("wrong_device", "wrong_device")],
)
def test_refusal__names_why_the_audit_trail_refused_the_reply(outcome: str, reason: str) -> None:
    item = read_reply(reply_record())
    letter = refusal(item, outcome)
    assert letter is not None and letter.reason == reason and letter.key == DEVICE
    assert COMMAND in letter.error
    assert refusal(item, "recorded") is None and refusal(item, "duplicate") is None


class FakeAudit:
    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.seen: list[DeviceReply] = []

    def record(self, replies: list[DeviceReply]) -> list[Recorded]:
        self.seen.extend(replies)
        requested = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
        return [Recorded(o, requested) for o in self.outcomes[: len(replies)]]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> Any:
        self.sent.append((topic, key, value))
        producer = self

        class Done:
            def get(self, timeout: float | None = None) -> Any:
                return producer

        return Done()

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_process__counts_recorded_duplicates_and_dead_letters() -> None:
    config = CommandReplyConfig(kafka_bootstrap="unused:9092", devices_dsn="unused")  # type: ignore[arg-type]
    audit, producer = FakeAudit(["recorded", "duplicate", "wrong_device"]), FakeProducer()
    metrics = FunctionMetrics(process_metrics=False)
    fn = CommandReplyFunction(config, audit, producer, metrics)  # type: ignore[arg-type]
    counts = fn.process([reply_record(), reply_record(), reply_record(), reply_record("bad")])
    assert counts == {"records": 4, "recorded": 1, "duplicates": 1, "dead_letters": 2}
    reasons = sorted(json.loads(v)["reason"] for _, _, v in producer.sent)
    assert reasons == ["bad_reply", "wrong_device"]
    assert {t for t, _, _ in producer.sent} == {"iot_dead_letter"}
    assert (
        metrics.registry.get_sample_value(
            "f2_command_reply_latency_seconds_count", {"path": "late"}
        )
        == 1
    )
