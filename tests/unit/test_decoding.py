"""The pure decode core: every encoding, every bad-input class as a dead letter, never a raise."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from decode.decoding import (
    decode_batch,
    decode_values,
    devices_of,
    hex_to_number,
    parse_bytes_literal,
    reader_text,
    scale,
)
from decode.params import DataPointParams, DeviceParameters
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.marks import Failure, Marks, Position, Redrive, Reprocess
from f2lib.contracts.records import RawRecord
from f2lib.errors import DecodingError

DEVICE = "f2-e4fd45f654be"
TS = "2023-05-26 18:34:04.928538"
TIME = datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)


def point(mode: str, connector: str, ctype: str, cid: str | None, encoding: str, **kw: Any):
    return DataPointParams(DEVICE, mode, connector, ctype, cid, encoding, **kw)


PARAMS = DeviceParameters.from_rows(
    [
        point("access-control-mode", "J1", "strike", "1", "boolean", units="state"),
        point("access-control-mode", "J1", "door-sensors", None, "boolean_map", units="state"),
        point("access-control-mode", "J1", "exit-buttons", None, "boolean_map", units="state"),
        point("access-control-mode", "J1", "reader", "1", "raw_string", units="text"),
        point("alarm-mode", "J2", "siren", "1", "boolean", units="state"),
        point("alarm-mode", "J2", "motion-sensor", "1", "boolean", units="presence"),
        point(
            "sensor-mode",
            "J3",
            "sensor",
            "3",
            "hex_to_float",
            units="celsius",
            scaling_factor=0.1,
            value_signed=True,
            value_width_bits=16,
        ),
        point(
            "sensor-mode",
            "J3",
            "sensor",
            "4",
            "hex_to_float",
            units="percent",
            scaling_factor=0.1,
            value_signed=False,
            value_width_bits=16,
        ),
        point("sensor-mode", "J3", "sensor", "5", "hex_to_float", units="raw"),
        point("sensor-mode", "J3", "sensor", "6", "fourier_transform", units="raw"),
    ]
)


def record(
    component: str,
    payload: Any,
    *,
    mode: str = "access-control-mode",
    connector: str = "J1",
    device: str = DEVICE,
    offset: int = 7,
) -> ConnectorRecord:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    raw = RawRecord(topic=f"cmnd/{device}/{mode}/{connector}/{component}", payload=text)
    return ConnectorRecord(
        topic="raw_iot_data", partition=1, offset=offset, key=device, value=raw.model_dump()
    )


def decode_one(rec: ConnectorRecord) -> Any:
    result = decode_batch([rec], PARAMS)
    assert len(result.measurements) + len(result.dead_letters) >= 1
    return result


def dead_reason(rec: ConnectorRecord) -> str:
    result = decode_batch([rec], PARAMS)
    assert result.measurements == []
    assert len(result.dead_letters) == 1
    return result.dead_letters[0].reason


# --- boolean -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "value"), [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0)])
def test_boolean__status_becomes_one_or_zero(status: object, value: float) -> None:
    result = decode_one(record("strike-1", {"timestamp": TS, "status": status}))
    [m] = result.measurements
    assert (m.value, m.value_text, m.unit) == (value, None, "state")
    assert (m.component_type, m.component_id, m.connector, m.connector_mode) == (
        "strike",
        "1",
        "J1",
        "access-control-mode",
    )
    assert m.time == TIME
    assert m.device_id == DEVICE
    assert m.topic == f"cmnd/{DEVICE}/access-control-mode/J1/strike-1"


def test_boolean__siren_and_motion_in_alarm_mode() -> None:
    siren = record("siren-1", {"timestamp": TS, "status": True}, mode="alarm-mode", connector="J2")
    motion = record(
        "motion-sensor-1", {"timestamp": TS, "status": False}, mode="alarm-mode", connector="J2"
    )
    result = decode_batch([siren, motion], PARAMS)
    assert [(m.component_type, m.value, m.unit) for m in result.measurements] == [
        ("siren", 1.0, "state"),
        ("motion-sensor", 0.0, "presence"),
    ]


@pytest.mark.parametrize("status", ["yes", "true", 2, None, 1.5])
def test_boolean__non_boolean_status_is_dead_lettered(status: object) -> None:
    assert dead_reason(record("strike-1", {"timestamp": TS, "status": status})) == "decoding_failed"


def test_boolean__missing_status_is_a_bad_payload() -> None:
    assert dead_reason(record("strike-1", {"timestamp": TS})) == "bad_payload"


# --- boolean_map -------------------------------------------------------------------------------


def test_boolean_map__one_measurement_per_member_named_by_the_member() -> None:
    payload = {"timestamp": TS, "door-sensor-1": False, "door-sensor-2": True}
    result = decode_one(record("door-sensors", payload))
    assert [(m.component_type, m.component_id, m.value) for m in result.measurements] == [
        ("door-sensors", "door-sensor-1", 0.0),
        ("door-sensors", "door-sensor-2", 1.0),
    ]
    assert {m.time for m in result.measurements} == {TIME}


def test_boolean_map__exit_buttons() -> None:
    result = decode_one(record("exit-buttons", {"timestamp": TS, "exit-button-1": True}))
    assert [(m.component_id, m.value) for m in result.measurements] == [("exit-button-1", 1.0)]


def test_boolean_map__without_members_is_a_bad_payload() -> None:
    assert dead_reason(record("door-sensors", {"timestamp": TS})) == "bad_payload"


def test_boolean_map__a_non_boolean_member_dead_letters_the_whole_record() -> None:
    payload = {"timestamp": TS, "door-sensor-1": False, "door-sensor-2": "open"}
    assert dead_reason(record("door-sensors", payload)) == "decoding_failed"


# --- hex_to_float ------------------------------------------------------------------------------


def sensor(n: int, data: object) -> ConnectorRecord:
    return record(
        f"sensor-{n}", {"timestamp": TS, "data": data}, mode="sensor-mode", connector="J3"
    )


@pytest.mark.parametrize(
    ("n", "data", "value"),
    [
        (3, "00FA", 25.0),  # 250 x 0.1, signed positive
        (3, "ff38", -20.0),  # two's complement at 16 bits: -200 x 0.1
        (3, "0x0117", 27.9),
        (4, "FF38", 6533.6),  # the same bits unsigned: 65336 x 0.1
        (5, "1A", 26.0),  # no width: the digits' own width, scaling 1
    ],
)
def test_hex_to_float__scaled_with_width_and_signedness(n: int, data: str, value: float) -> None:
    [m] = decode_one(sensor(n, data)).measurements
    assert m.value == pytest.approx(value)
    assert (m.component_type, m.component_id) == ("sensor", str(n))


@pytest.mark.parametrize("data", ["zz", "", "0x", "12 34", "-1A", "1.5"])
def test_hex_to_float__bad_hex_is_dead_lettered(data: str) -> None:
    assert dead_reason(sensor(3, data)) == "decoding_failed"


def test_hex_to_float__value_wider_than_the_width_is_dead_lettered() -> None:
    assert dead_reason(sensor(3, "1FFFF")) == "decoding_failed"


def test_hex_to_float__leading_zeros_beyond_the_width_are_fine() -> None:
    [m] = decode_one(sensor(4, "000000FA")).measurements
    assert m.value == pytest.approx(25.0)


@pytest.mark.parametrize("data", [250, None, ["00FA"]])
def test_hex_to_float__non_string_data_is_dead_lettered(data: object) -> None:
    assert dead_reason(sensor(3, data)) == "decoding_failed"


def test_hex_to_number__signed_extremes() -> None:
    assert hex_to_number("8000", 16, True) == -32768
    assert hex_to_number("7fff", 16, True) == 32767
    assert hex_to_number("ffffffff", 32, True) == -1
    assert hex_to_number("ffffffff", 32, False) == 4294967295


def test_unknown_encoding_in_parameters_is_dead_lettered_not_guessed() -> None:
    assert dead_reason(sensor(6, "00FA")) == "decoding_failed"


# --- raw_string --------------------------------------------------------------------------------


def test_raw_string__seed_reader_payload_loses_only_the_bytes_literal_wrapping() -> None:
    payload = {"timestamp": "2023-05-26 17:24:28.808888", "data": "b'\"Hello World\"'"}
    [m] = decode_one(record("reader-1", payload)).measurements
    assert m.value is None
    assert m.value_text == '"Hello World"'
    assert m.unit == "text"
    assert (m.component_type, m.component_id) == ("reader", "1")


@pytest.mark.parametrize(
    ("literal", "content"),
    [
        ("b'Hello World'", b"Hello World"),
        ('b"it\'s"', b"it's"),
        ("b'it\\'s'", b"it's"),
        ("b'a\\\\b'", b"a\\b"),
        ("b'\\x41\\x42'", b"AB"),
        ("b'\\101\\0'", b"A\x00"),
        ("b'\\n\\t\\r\\a\\b\\f\\v'", b"\n\t\r\x07\x08\x0c\x0b"),
        ("b'line\\\ncontinued'", b"linecontinued"),
        ("b'\\d'", b"\\d"),  # unknown escape keeps its backslash, as Python does
        ("B'UP'", b"UP"),
        ("rb'\\x41'", b"\\x41"),
        ("b''", b""),
    ],
)
def test_parse_bytes_literal__python_escapes(literal: str, content: bytes) -> None:
    assert parse_bytes_literal(literal) == content


@pytest.mark.parametrize(
    "literal",
    [
        "b'unterminated",
        "b'a' + b'b'",
        "b'' + __import__('os').system('true') + b''",
        "b'\\x4'",
        "b'\\x4g'",
        "b'caf\u00e9'",
        "b'\\777'",
        "b'trailing\\'",
        "b'",
        "'not bytes'",
    ],
)
def test_parse_bytes_literal__rejects_anything_but_one_literal(literal: str) -> None:
    with pytest.raises(DecodingError):
        parse_bytes_literal(literal)


def test_reader_text__utf8_bytes_are_decoded() -> None:
    assert reader_text("b'caf\\xc3\\xa9'") == "café"


def test_reader_text__plain_text_is_kept_as_is() -> None:
    assert reader_text("QR:12345") == "QR:12345"


def test_raw_string__invalid_utf8_is_dead_lettered() -> None:
    payload = {"timestamp": TS, "data": "b'\\xff\\xfe'"}
    assert dead_reason(record("reader-1", payload)) == "decoding_failed"


def test_raw_string__nul_byte_is_dead_lettered_because_postgres_text_cannot_hold_it() -> None:
    payload = {"timestamp": TS, "data": "b'a\\x00b'"}
    assert dead_reason(record("reader-1", payload)) == "decoding_failed"


def test_raw_string__malformed_literal_is_dead_lettered() -> None:
    payload = {"timestamp": TS, "data": "b'never closed"}
    assert dead_reason(record("reader-1", payload)) == "decoding_failed"


def test_raw_string__non_string_data_is_dead_lettered() -> None:
    assert dead_reason(record("reader-1", {"timestamp": TS, "data": 42})) == "decoding_failed"


# --- timestamps, payloads, topics, parameters ----------------------------------------------


def test_iso_8601_timestamp_with_zone_is_stored_in_utc() -> None:
    payload = {"timestamp": "2023-05-26T20:34:04.928538+02:00", "status": True}
    [m] = decode_one(record("strike-1", payload)).measurements
    assert m.time == TIME


@pytest.mark.parametrize(
    "payload",
    [
        {"status": True},
        {"timestamp": None, "status": True},
        {"timestamp": "yesterday", "status": True},
        {"timestamp": 1685126044, "status": True},
        {"timestamp": "2023-02-30 10:00:00", "status": True},
    ],
)
def test_missing_or_invalid_timestamp_is_dead_lettered(payload: dict[str, object]) -> None:
    assert dead_reason(record("strike-1", payload)) == "bad_timestamp"


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", '"text"', "", "null"])
def test_bad_json_payload_is_dead_lettered(payload: str) -> None:
    assert dead_reason(record("strike-1", payload)) == "bad_payload"


def test_binary_payload_is_dead_lettered() -> None:
    raw = RawRecord.from_mqtt(f"cmnd/{DEVICE}/access-control-mode/J1/strike-1", b"\xff\x00", 1)
    rec = ConnectorRecord(topic="raw_iot_data", key=DEVICE, value=raw.model_dump())
    assert raw.payload_encoding == "base64"
    assert dead_reason(rec) == "bad_payload"


@pytest.mark.parametrize("value", ["not json at all", 42, None, ["a"], {"payload": "{}"}])
def test_record_value_that_is_not_a_raw_record_is_dead_lettered(value: object) -> None:
    rec = ConnectorRecord(topic="raw_iot_data", partition=0, offset=1, key=None, value=value)
    assert dead_reason(rec) == "bad_payload"


def test_raw_record_as_json_text_is_accepted() -> None:
    raw = RawRecord(
        topic=f"cmnd/{DEVICE}/access-control-mode/J1/strike-1",
        payload=json.dumps({"timestamp": TS, "status": True}),
    )
    rec = ConnectorRecord(topic="raw_iot_data", key=DEVICE, value=raw.model_dump_json())
    assert len(decode_batch([rec], PARAMS).measurements) == 1


def test_bad_topic_is_dead_lettered() -> None:
    rec = record("strike-1", {"timestamp": TS, "status": True}, connector="J7")
    assert dead_reason(rec) == "bad_topic"


def test_unknown_device_is_dead_lettered_never_guessed() -> None:
    rec = record("strike-1", {"timestamp": TS, "status": True}, device="f2-000000000001")
    assert dead_reason(rec) == "unknown_device"


@pytest.mark.parametrize(
    ("component", "mode", "connector"),
    [
        ("strike-9", "access-control-mode", "J1"),  # no such strike
        ("strike-1", "access-control-mode", "J2"),  # wrong connector
        ("strike-1", "alarm-mode", "J1"),  # wrong mode for the connector
        ("reader-2", "access-control-mode", "J1"),
    ],
)
def test_unknown_component_is_dead_lettered(component: str, mode: str, connector: str) -> None:
    rec = record(component, {"timestamp": TS, "status": True}, mode=mode, connector=connector)
    assert dead_reason(rec) == "unknown_component"


def test_base64_payload_that_is_json_decodes() -> None:
    payload = json.dumps({"timestamp": TS, "status": True}).encode()
    raw = RawRecord(
        topic=f"cmnd/{DEVICE}/access-control-mode/J1/strike-1",
        payload=base64.b64encode(payload).decode(),
        payload_encoding="base64",
    )
    rec = ConnectorRecord(topic="raw_iot_data", key=DEVICE, value=raw.model_dump())
    assert [m.value for m in decode_batch([rec], PARAMS).measurements] == [1.0]


# --- the batch ---------------------------------------------------------------------------------


def test_decode_batch__keeps_order_and_dead_letters_carry_the_original_and_its_source() -> None:
    good1 = record("strike-1", {"timestamp": TS, "status": True}, offset=10)
    bad = record("strike-1", "{oops", offset=11)
    good2 = record("door-sensors", {"timestamp": TS, "door-sensor-1": True}, offset=12)
    result = decode_batch([good1, bad, good2], PARAMS)
    assert [m.component_type for m in result.measurements] == ["strike", "door-sensors"]
    [letter] = result.dead_letters
    assert (letter.stage, letter.reason, letter.key) == ("decode", "bad_payload", DEVICE)
    value = letter.to_value()
    assert value["record"] == bad.value
    assert value["source"] == {"topic": "raw_iot_data", "partition": 1, "offset": 11}
    assert value["stage"] == "decode"
    assert value["reason"] == "bad_payload"
    assert "not JSON" in value["error"]
    json.dumps(value)  # the dead letter is JSON-serialisable as it is


def test_decode_batch__dead_letter_key_falls_back_to_the_topic_device() -> None:
    rec = record("strike-1", "{oops")
    rec = rec.model_copy(update={"key": None})
    [letter] = decode_batch([rec], PARAMS).dead_letters
    assert letter.key == DEVICE


def test_decode_batch__empty_batch() -> None:
    result = decode_batch([], PARAMS)
    assert (result.measurements, result.dead_letters) == ([], [])


def test_devices_of__collects_device_ids_from_topics_and_skips_junk() -> None:
    records = [
        record("strike-1", {}),
        record("strike-1", {}, device="f2-0a1b2c3d4e5f"),
        ConnectorRecord(value="junk"),
        ConnectorRecord(value={"topic": "not/an/f2/topic"}),
    ]
    assert devices_of(records) == {DEVICE, "f2-0a1b2c3d4e5f"}


@pytest.mark.parametrize(
    ("number", "factor", "expected"),
    [
        (10194, 0.1, 1019.4),
        (2793, 0.01, 27.93),
        (-200, 0.1, -20.0),
        (7, 1.0, 7.0),
        (123456789, 0.001, 123456.789),
        (3, 2.5, 7.5),
    ],
)
def test_scale__removes_binary_noise_of_the_multiplication(
    number: int, factor: float, expected: float
) -> None:
    assert scale(number, factor) == expected
    assert repr(scale(number, factor)) == repr(expected)


def test_decode_batch__marks_go_with_each_measurement_and_with_the_dead_letter() -> None:
    where = Position("iot_dead_letter", 0, 4)
    marks = Marks(Redrive(1, where, (Failure("decode", "unknown_device", "x", None, where),)))
    marked = record(
        "door-sensors", {"timestamp": TS, "door-sensor-1": True, "door-sensor-2": False}
    )
    marked = marked.model_copy(update={"headers": marks.header_values()})
    plain = record("strike-1", {"timestamp": TS, "status": True}, offset=8)
    bad = record("strike-9", {"timestamp": TS, "status": True}, offset=9)
    bad = bad.model_copy(update={"headers": marks.header_values()})
    result = decode_batch([marked, plain, bad], PARAMS)
    assert [(m.component_id, bool(k)) for m, k in result.marked()] == [
        ("door-sensor-1", True),
        ("door-sensor-2", True),
        ("1", False),
    ]
    assert result.marks[0] == marks
    [letter] = result.dead_letters
    value = letter.to_value()
    assert value["reason"] == "unknown_component"
    assert value["redrive"]["count"] == 1
    assert [entry["reason"] for entry in value["history"]] == ["unknown_device"]


def test_devices_of__marked_only_names_the_devices_of_redriven_or_reprocessed_records() -> None:
    other = "f2-0a1b2c3d4e5f"
    marked = record("strike-1", {"timestamp": TS, "status": True}, device=other)
    marked = marked.model_copy(update={"headers": Marks(reprocess=Reprocess("r")).header_values()})
    records = [record("strike-1", {"timestamp": TS, "status": True}), marked]
    assert devices_of(records) == {DEVICE, other}
    assert devices_of(records, marked_only=True) == {other}


# --- found by fuzzing (tests/unit/test_fuzz_decode.py): each was an exception out of the batch,
# a 500 the connector retries for ever --------------------------------------------------------


def test_hex_to_float__a_number_beyond_a_float_is_dead_lettered_not_a_crash() -> None:
    # 400 hex digits without a width: 1600 bits, which no float holds (OverflowError before)
    assert dead_reason(sensor(5, "0x" + "f" * 400)) == "decoding_failed"


def test_hex_to_float__a_scaled_value_that_is_not_finite_is_dead_lettered() -> None:
    huge = DataPointParams(DEVICE, "sensor-mode", "J3", "sensor", "5", "hex_to_float",
                           scaling_factor=1e306)  # fmt: skip
    with pytest.raises(DecodingError, match="not a finite number"):
        decode_values({"data": "7fff"}, huge, "5")  # 3.3e310 was stored as inf before


def test_timestamp__after_the_last_utc_datetime_is_dead_lettered_not_a_crash() -> None:
    # 9999-12-31 23:59:59 at -01:00 is 10000-01-01 in UTC (OverflowError before)
    rec = record("strike-1", {"status": True, "timestamp": "9999-12-31 23:59:59-01:00"})
    assert dead_reason(rec) == "bad_timestamp"


def test_payload__nested_deeper_than_the_recursion_limit_is_a_bad_payload_not_a_crash() -> None:
    # a device's 4 KB payload of brackets raised RecursionError out of the batch: a poison
    # record the connector would have retried for ever
    assert dead_reason(record("strike-1", "[" * 2000 + "]" * 2000)) == "bad_payload"
