"""The redrive's pure parts: selections and their groups, destinations and marks, the limit, the
ledger's metadata, time windows and the retention check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.partitioner import DefaultPartitioner

from f2lib.contracts.marks import Marks, Position
from f2lib.contracts.records import DeadLetterValue, dead_letter, dump_json
from f2lib.errors import ConfigError
from infra.tools.redrive.decision import (
    Outcome,
    RedriveTopics,
    at_limit,
    resend_of,
    target_topic,
)
from infra.tools.redrive.ledger import GroupRecord, RunState, stopped_runs_marks
from infra.tools.redrive.selection import Selection, device_of
from infra.tools.redrive.summary import RedriveSummary
from infra.tools.replay.positions import Bounds, aged_out, key_partition
from infra.tools.replay.window import TimeWindow, parse_moment

DEVICE = "f2-e4fd45f654be"
OTHER = "f2-0a1b2c3d4e5f"
TOPICS = RedriveTopics("iot_dead_letter", "raw_iot_data", "decoded_iot_data", "iot_command_replies")
HERE = Position("iot_dead_letter", 1, 40)
RAW = {"topic": f"cmnd/{DEVICE}/access-control-mode/J1/strike-1", "payload": "{}", "qos": 1}


def letter(
    stage: str = "decode", reason: str = "unknown_device", record: Any = RAW, **fields: Any
) -> DeadLetterValue:
    key, source = fields.pop("key", DEVICE), fields.pop("source", None)
    value = dead_letter(record, stage=stage, reason=reason, error="boom", key=key, source=source)
    return DeadLetterValue.parse(dump_json({**value, **fields}))


# --- selection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), True),
        (Selection(stage="decode"), True),
        (Selection(stage="sink"), False),
        (Selection(reason="unknown_device"), True),
        (Selection(reason="bad_payload"), False),
        (Selection(device=DEVICE), True),
        (Selection(device=OTHER), False),
        (Selection(since_ms=1000, until_ms=2000), True),
        (Selection(since_ms=1000), True),
        (Selection(since_ms=1001), False),
        (Selection(until_ms=999), False),
        (Selection(stage="decode", reason="unknown_device", device=DEVICE, until_ms=1000), True),
    ],
)
def test_selection__matches_each_filter_and_all_together(
    selection: Selection, expected: bool
) -> None:
    assert selection.matches(letter(), 1000) is expected


def test_selection__stage_connector_takes_the_letters_of_every_function() -> None:
    assert Selection(stage="connector").matches(letter(stage="connector:sink"), 0)
    assert Selection(stage="connector:sink").matches(letter(stage="connector:sink"), 0)
    assert not Selection(stage="connector:decode").matches(letter(stage="connector:sink"), 0)


def test_device_of__the_key_else_the_record_topic_else_the_measurement_device() -> None:
    assert device_of(letter()) == DEVICE
    assert device_of(letter(key=None)) == DEVICE
    assert device_of(letter(key=None, record={"device_id": OTHER, "value": 1})) == OTHER
    assert device_of(letter(key="junk", record="not json")) is None


def test_group_id__one_per_selection_readable_and_the_bare_prefix_for_everything() -> None:
    assert Selection().group_id() == "f2pipe-redrive"
    assert (
        Selection(reason="unknown_device", device=DEVICE).group_id()
        == f"f2pipe-redrive.reason=unknown_device.device={DEVICE}"
    )
    long = Selection(stage="x" * 200).group_id()
    assert long.startswith("f2pipe-redrive.") and len(long) == len("f2pipe-redrive.") + 16
    assert long == Selection(stage="x" * 200).group_id()
    assert Selection(since_ms=1).group_id() != Selection(since_ms=2).group_id()


def test_selection__json_round_trip_and_garbage_is_none() -> None:
    selection = Selection("decode", "unknown_device", DEVICE, 10, 20)
    assert Selection.from_json(selection.to_json()) == selection
    assert Selection.from_json({"since_ms": "yesterday"}) is None
    assert Selection.from_json([]) is None


# --- decision ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "source", "expected"),
    [
        ("bridge", None, "raw_iot_data"),
        ("decode", None, "raw_iot_data"),
        ("sink", None, "decoded_iot_data"),
        ("connector:decode", None, "raw_iot_data"),
        ("connector:sink", None, "decoded_iot_data"),
        ("connector:other", {"topic": "decoded_iot_data", "partition": 0, "offset": 1},
         "decoded_iot_data"),
        ("connector:other", {"topic": "elsewhere", "partition": 0, "offset": 1}, None),
        ("connector:command-reply", {"topic": "iot_command_replies", "partition": 2,
         "offset": 1}, "iot_command_replies"),
        ("command_reply", {"topic": "iot_command_replies", "partition": 0, "offset": 1},
         "iot_command_replies"),
        ("mystery", None, None),
    ],
)  # fmt: skip
def test_target_topic__the_start_of_the_stage_the_letter_failed_at(
    stage: str, source: dict[str, Any] | None, expected: str | None
) -> None:
    assert target_topic(letter(stage=stage, source=source), TOPICS) == expected


def test_target_topic__a_reply_the_bridge_refused_goes_back_to_the_replies_topic() -> None:
    reply = {**RAW, "topic": f"ctrl-resp/{DEVICE}/extra"}
    assert target_topic(letter(stage="bridge", record=reply), TOPICS) == "iot_command_replies"
    assert target_topic(letter(stage="bridge"), TOPICS) == "raw_iot_data"


def test_resend__keeps_key_and_value_and_marks_count_dead_letter_and_history() -> None:
    resend = resend_of(letter(), HERE, TOPICS)
    assert resend is not None
    assert (resend.topic, resend.key) == ("raw_iot_data", DEVICE)
    assert json.loads(resend.value) == RAW
    marks = Marks.from_kafka(resend.headers)
    assert marks.redrive is not None
    assert (marks.redrive.count, marks.redrive.dead_letter) == (1, HERE)
    assert [(f.stage, f.reason, f.dead_letter) for f in marks.redrive.history] == [
        ("decode", "unknown_device", HERE)
    ]


def test_resend__a_text_record_goes_as_it_was_and_no_record_is_no_resend() -> None:
    text = resend_of(letter(record="{not json"), HERE, TOPICS)
    assert text is not None and text.value == b"{not json"
    assert resend_of(letter(record=None), HERE, TOPICS) is None
    assert resend_of(letter(stage="mystery"), HERE, TOPICS) is None


@pytest.mark.parametrize(("count", "limit", "stops"), [(0, 3, False), (2, 3, False), (3, 3, True),
                                                       (5, 3, True), (1, 1, True)])  # fmt: skip
def test_at_limit__a_record_redriven_max_times_stops(count: int, limit: int, stops: bool) -> None:
    redrive = {"count": count, "dead_letter": HERE.to_json()} if count else None
    assert at_limit(letter(redrive=redrive), limit) is stops


# --- ledger ------------------------------------------------------------------------------------


def test_run_state__metadata_round_trip() -> None:
    marks = {TopicPartition("raw_iot_data", 2): 17, TopicPartition("decoded_iot_data", 0): 3}
    state = RunState(Selection(reason="unknown_device"), 3, False, marks)
    assert RunState.from_metadata(state.to_metadata()) == state


@pytest.mark.parametrize("text", [None, "", "not json", '{"v": 2}', '{"v": 1, "selection": 3}'])
def test_run_state__other_metadata_is_none(text: str | None) -> None:
    assert RunState.from_metadata(text) is None


def test_run_state__too_many_marks_for_kafka_are_dropped_not_refused() -> None:
    marks = {TopicPartition(f"topic_{i}", i): i for i in range(400)}
    text = RunState(Selection(), 3, False, marks).to_metadata()
    assert len(text) < 4000
    restored = RunState.from_metadata(text)
    assert restored is not None and restored.marks == {}


def test_group_record__took_what_is_below_its_offset_selected_and_under_its_limit() -> None:
    group = GroupRecord("g", {1: 41}, RunState(Selection(reason="unknown_device"), 2, True))
    assert group.took(letter(), 1, 40, 0)
    assert not group.took(letter(), 1, 41, 0)  # not read by it yet
    assert not group.took(letter(), 0, 40, 0)  # another partition
    assert not group.took(letter(reason="bad_payload"), 1, 40, 0)
    at_its_limit = letter(redrive={"count": 2, "dead_letter": HERE.to_json()})
    assert not group.took(at_its_limit, 1, 40, 0)
    assert not GroupRecord("g", {1: 41}, None).took(letter(), 1, 40, 0)


def test_stopped_runs_marks__the_lowest_mark_of_unfinished_runs_only() -> None:
    tp = TopicPartition("raw_iot_data", 0)
    groups = [
        GroupRecord("a", {}, RunState(Selection(), 3, False, {tp: 10})),
        GroupRecord("b", {}, RunState(Selection(), 3, False, {tp: 4})),
        GroupRecord("c", {}, RunState(Selection(), 3, True, {tp: 1})),
        GroupRecord("d", {}, None),
    ]
    assert stopped_runs_marks(groups) == {tp: 4}


# --- window, retention, partitions -------------------------------------------------------------

NOW = datetime(2025, 6, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", datetime(2025, 6, 8, 10, 0, tzinfo=UTC)),
        ("90s", datetime(2025, 6, 8, 11, 58, 30, tzinfo=UTC)),
        ("1.5d", datetime(2025, 6, 7, 0, 0, tzinfo=UTC)),
        ("1w", datetime(2025, 6, 1, 12, 0, tzinfo=UTC)),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T12:30", datetime(2025, 6, 1, 12, 30, tzinfo=UTC)),
        ("2025-06-01 14:30:00+02:00", datetime(2025, 6, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_parse_moment__iso_times_and_durations_ago(text: str, expected: datetime) -> None:
    assert parse_moment(text, NOW) == expected


def test_time_window__bounds_are_included_and_an_empty_window_is_refused() -> None:
    window = TimeWindow.parse("2h", "1h", NOW)
    assert window.contains(int(NOW.timestamp() * 1000) - 3_600_000)
    assert not window.contains(int(NOW.timestamp() * 1000))
    with pytest.raises(ConfigError, match="SINCE is after UNTIL"):
        TimeWindow.parse("1h", "2h", NOW)
    with pytest.raises(ConfigError, match="neither"):
        TimeWindow.parse("yesterday", None, NOW)


@pytest.mark.parametrize(
    ("found", "since", "retention", "expected"),
    [
        (Bounds(0, 10, 5_000), 1_000, None, False),  # nothing deleted: the topic began later
        (Bounds(4, 10, 5_000), 6_000, None, False),  # the window starts after the oldest left
        (Bounds(4, 10, 5_000), 1_000, None, True),  # records older than the oldest are gone
        (Bounds(10, 10, None), 1_000, 5_000, True),  # emptied, and the window beyond retention
        (Bounds(10, 10, None), 9_000, 5_000, False),  # emptied, the window within retention
    ],
)
def test_aged_out__only_when_records_of_the_window_may_have_been_deleted(
    found: Bounds, since: int, retention: int | None, expected: bool
) -> None:
    assert aged_out(found, since, retention, now_ms=10_000) is expected


class _Cluster:
    def __init__(self, count: int) -> None:
        self.count = count

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


@pytest.mark.parametrize("count", [1, 3, 6])
def test_key_partition__is_the_producers_partition_for_the_key(count: int) -> None:
    partitioner = DefaultPartitioner()
    for key in (DEVICE, OTHER, "f2-000000000001"):
        expected = partitioner.partition("t", key, key.encode(), None, None, _Cluster(count))
        assert key_partition(key, count) == expected


# --- summary -----------------------------------------------------------------------------------


def test_summary__counts_per_stage_and_reason_and_lists_letters_at_the_limit() -> None:
    summary = RedriveSummary("g", Selection(reason="unknown_device"), False, 3)
    summary.add("decode", "unknown_device", Outcome.SENT, None)
    summary.add("decode", "unknown_device", Outcome.SENT, None)
    detail = {"dead_letter": str(HERE), "device": DEVICE, "stage": "decode",
              "reason": "unknown_device", "count": 3}  # fmt: skip
    summary.add("decode", "unknown_device", Outcome.AT_LIMIT, detail)
    summary.add("sink", "invalid_measurement", Outcome.NOT_SELECTED, None)
    summary.sent_to["raw_iot_data"] = 2
    body = summary.to_json()
    assert (body["read"], body["not_selected"], body["sent"]) == (4, 1, 2)
    assert body["by_stage_and_reason"] == [
        {"stage": "decode", "reason": "unknown_device", "sent": 2, "at_limit": 1}
    ]
    text = summary.render()
    assert "sent 2 to raw_iot_data" in text
    assert f"at_limit: {HERE} device {DEVICE}" in text


def test_describe_dsn__names_host_port_and_database_never_the_password() -> None:
    from infra.tools.replay.preflight import describe_dsn

    text = describe_dsn("host=db.example port=6543 dbname=timeseries user=u password=s3cret")
    assert text == "db.example:6543/timeseries"
    assert "s3cret" not in describe_dsn("postgresql://u:s3cret@db:5432/x")
