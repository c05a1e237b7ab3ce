"""Redrive and reprocess marks: Kafka headers, the invocation element's ``headers``, and what a
dead letter of a marked record keeps (the marks and the history of reasons)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest

from f2lib.contracts.invocation import ConnectorRecord, encode_record, parse_invocation
from f2lib.contracts.marks import (
    NO_MARKS,
    REDRIVE_HEADER,
    REPROCESS_HEADER,
    Failure,
    Marks,
    Position,
    Redrive,
    Reprocess,
    without_marks,
)
from f2lib.contracts.records import DeadLetter, DeadLetterValue, dead_letter, dump_json
from f2lib.errors import RecordError, UnknownDeviceError

DEVICE = "f2-e4fd45f654be"
RAW = {"topic": f"cmnd/{DEVICE}/alarm-mode/J2/siren-1", "payload": "{}", "qos": 1}
LETTER_AT = Position("iot_dead_letter", 2, 17)


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def redriven(count: int = 1) -> Marks:
    failure = Failure("decode", "unknown_device", "no parameters", "2025-06-01T00:00:00", LETTER_AT)
    return Marks(Redrive(count, LETTER_AT, (failure,)))


def test_marks__round_trip_through_kafka_headers() -> None:
    marks = Marks(redriven(2).redrive, Reprocess("run-1", Position("raw_iot_data", 0, 5)))
    headers = marks.kafka_headers()
    assert {name for name, _ in headers} == {REDRIVE_HEADER, REPROCESS_HEADER}
    assert Marks.from_kafka(headers) == marks
    assert marks.overwrite and not redriven().overwrite


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"other": "x"}, {REDRIVE_HEADER: "not json"}, {REDRIVE_HEADER: '{"count":"1"}'}],
)
def test_marks__absent_or_malformed_headers_are_no_marks(headers: dict[str, str] | None) -> None:
    assert Marks.from_headers(headers) is NO_MARKS
    assert not Marks.from_headers(headers)


def test_without_marks__drops_only_the_mark_headers() -> None:
    headers = [("trace", b"1"), *redriven().kafka_headers()]
    assert without_marks(headers) == [("trace", b"1")]


def test_encode_record__headers_travel_in_the_element_and_back_to_the_function() -> None:
    marks = redriven()
    record = Rec("raw_iot_data", 1, 9, DEVICE.encode(), json.dumps(RAW).encode(),
                 [*marks.kafka_headers(), ("trace", b"abc")])  # fmt: skip
    element = encode_record(record)
    assert json.loads(element.body)["headers"]["trace"] == "abc"
    [received] = parse_invocation(b"[" + element.body + b"]", {})
    assert received.value == RAW
    assert received.headers is not None and received.headers["trace"] == "abc"
    assert received.marks == marks


@pytest.mark.parametrize("value", [json.dumps(RAW).encode(), b"not json"])
def test_encode_record__a_record_without_headers_keeps_the_old_element(value: bytes) -> None:
    element = encode_record(Rec("raw_iot_data", 1, 9, None, value, []))
    assert set(json.loads(element.body)) == {"topic", "partition", "offset", "key", "value"}
    assert element.headers is None


def test_parse_invocation__an_element_without_headers_has_no_marks() -> None:
    body = json.dumps([{"topic": "raw_iot_data", "partition": 0, "offset": 1, "value": RAW}])
    [record] = parse_invocation(body.encode(), {})
    assert record.headers is None and record.marks is NO_MARKS


def test_dead_letter__of_a_marked_record_keeps_the_marks_and_the_history() -> None:
    marks = Marks(redriven(2).redrive, Reprocess("run-1"))
    record = ConnectorRecord(topic="raw_iot_data", partition=0, offset=3, key=DEVICE, value=RAW,
                             headers=marks.header_values())  # fmt: skip
    error = UnknownDeviceError("no decoding parameters", device_id=DEVICE)
    letter = DeadLetter.from_error(record, error).to_value()
    assert letter["redrive"] == {"count": 2, "dead_letter": LETTER_AT.to_json()}
    assert [entry["reason"] for entry in letter["history"]] == ["unknown_device"]
    assert letter["reprocess"] == {"run": "run-1"}


def test_dead_letter__of_an_unmarked_record_has_no_mark_fields() -> None:
    letter = dead_letter(RAW, stage="decode", reason="bad_payload", error="x", key=DEVICE)
    assert not {"redrive", "history", "reprocess"} & set(letter)


def letter_value(**fields: Any) -> bytes:
    base = dead_letter(RAW, stage="decode", reason="unknown_device", error="no params", key=DEVICE)
    return dump_json({**base, **fields})


def test_redriven_marks__a_first_failure_becomes_count_one_with_itself_in_the_history() -> None:
    letter = DeadLetterValue.parse(letter_value())
    marks = letter.redriven_marks(LETTER_AT)
    assert marks.redrive is not None and marks.reprocess is None
    assert marks.redrive.count == 1 and marks.redrive.dead_letter == LETTER_AT
    assert [(f.stage, f.reason, f.dead_letter) for f in marks.redrive.history] == [
        ("decode", "unknown_device", LETTER_AT)
    ]


def test_redriven_marks__count_and_history_grow_and_a_reprocess_mark_is_kept() -> None:
    earlier = Position("iot_dead_letter", 2, 3)
    previous = Marks(
        Redrive(1, earlier, (Failure("decode", "unknown_device", "x", None, earlier),)),
        Reprocess("run-9"),
    )
    letter = DeadLetterValue.parse(letter_value(reason="unknown_component",
                                                **previous.letter_fields()))  # fmt: skip
    assert letter.redrive_count == 1
    marks = letter.redriven_marks(LETTER_AT)
    assert marks.redrive is not None
    assert marks.redrive.count == 2
    assert [f.reason for f in marks.redrive.history] == ["unknown_device", "unknown_component"]
    assert [f.dead_letter for f in marks.redrive.history] == [earlier, LETTER_AT]
    assert marks.reprocess == Reprocess("run-9")


@pytest.mark.parametrize("value", [None, b"not json", b"[]", b'{"stage": "decode"}'])
def test_dead_letter_value__what_is_not_a_letter_is_a_record_error(value: bytes | None) -> None:
    with pytest.raises(RecordError):
        DeadLetterValue.parse(value)


def test_history__long_errors_are_cut_in_the_header() -> None:
    failure = Failure("sink", "invalid_measurement", "e" * 5000, None, LETTER_AT)
    header = dict(Marks(Redrive(1, LETTER_AT, (failure,))).header_values())[REDRIVE_HEADER]
    assert len(header) < 1000
