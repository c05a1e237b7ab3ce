"""Fuzzed raw records into decode_batch: each ends as measurements or one dead letter with a
reason, never an exception out of the batch (which would be a 5xx the connector retries for
ever: a poison record)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from decode.decoding import decode_batch, decode_values
from decode.params import DataPointParams, DeviceParameters
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.errors import RecordError
from tests.fuzz_support import (
    HEX,
    JSON_VALUES,
    PAYLOADS,
    VALID_TIMESTAMPS,
    mqtt_topics,
    payload_objects,
)

DEVICE = "f2-a1b2c3d4e5f6"
POINTS = [
    ("access-control-mode", "J1", "strike", "1", "boolean", None, 1.0, False, None),
    ("access-control-mode", "J1", "door-sensors", None, "boolean_map", None, 1.0, False, None),
    ("access-control-mode", "J2", "reader", "1", "raw_string", None, 1.0, False, None),
    ("sensor-mode", "J3", "sensor", "1", "hex_to_float", "C", 0.1, True, 16),
    ("sensor-mode", "J3", "sensor", "2", "hex_to_float", "%", 1e-300, False, None),
    ("sensor-mode", "J4", "sensor", "3", "hex_to_float", "Pa", 1e300, False, None),
    ("alarm-mode", "J4", "siren", "1", "boolean", None, 1.0, False, None),
]
PARAMS = DeviceParameters.from_rows(DataPointParams(DEVICE, *point) for point in POINTS)
KNOWN_TOPICS = st.sampled_from(
    [f"cmnd/{DEVICE}/{m}/{c}/{t}" + (f"-{i}" if i else "") for m, c, t, i, *_ in POINTS]
)


@st.composite
def connector_records(draw: st.DrawFn) -> ConnectorRecord:
    """A connector record whose value is a raw record (well or badly formed) or anything."""
    topic = draw(st.one_of(KNOWN_TOPICS, mqtt_topics()))
    payload = draw(st.one_of(payload_objects().map(json.dumps), PAYLOADS.map(
        lambda b: b.decode("utf-8", "replace"))))  # fmt: skip
    raw: dict[str, Any] = {"topic": topic, "payload": payload, "received_at": "x", "qos": 1}
    if draw(st.booleans()):
        raw["payload_encoding"] = draw(st.sampled_from(["utf-8", "base64", "latin-1"]))
    value = draw(st.one_of(st.just(raw), JSON_VALUES, st.just(json.dumps(raw))))
    return ConnectorRecord(topic="raw_iot_data", partition=0, offset=draw(st.integers(0, 9)),
                           key=draw(st.one_of(st.none(), st.just(DEVICE))), value=value)  # fmt: skip


def assert_one_outcome(record: ConnectorRecord) -> None:
    """Measurements (each a valid one) or exactly one dead letter naming stage and reason."""
    result = decode_batch([record], PARAMS)
    if result.dead_letters:
        (letter,) = result.dead_letters
        assert not result.measurements
        value = letter.to_value()
        assert value["stage"] == "decode" and value["reason"] and value["error"]
    else:
        assert result.measurements, "a record that is not dead-lettered yields measurements"
        for measurement in result.measurements:
            encoded = json.loads(measurement.to_json_bytes())
            assert encoded["device_id"] == DEVICE
            assert encoded["value"] is None or isinstance(encoded["value"], float)


@given(record=connector_records())
def test_decode_batch__each_record_becomes_measurements_or_one_dead_letter(
    record: ConnectorRecord,
) -> None:
    assert_one_outcome(record)


@given(records=st.lists(connector_records(), max_size=8))
def test_decode_batch__a_batch_keeps_one_outcome_per_record(
    records: list[ConnectorRecord],
) -> None:
    result = decode_batch(records, PARAMS)
    one_by_one = [decode_batch([r], PARAMS) for r in records]
    assert len(result.dead_letters) == sum(len(r.dead_letters) for r in one_by_one)
    assert len(result.measurements) == sum(len(r.measurements) for r in one_by_one)


@st.composite
def near_valid_records(draw: st.DrawFn) -> ConnectorRecord:
    """A known component's topic and a valid timestamp: the fuzzing is in the values."""
    topic = draw(KNOWN_TOPICS)
    body = draw(payload_objects())
    body["timestamp"] = draw(VALID_TIMESTAMPS)
    raw = {"topic": topic, "payload": json.dumps(body), "received_at": "x", "qos": 1}
    return ConnectorRecord(topic="raw_iot_data", partition=0, offset=0, key=DEVICE, value=raw)


@given(record=near_valid_records())
def test_decode_batch__values_of_every_shape_for_known_components(
    record: ConnectorRecord,
) -> None:
    assert_one_outcome(record)


@given(
    data=HEX,
    factor=st.floats(allow_nan=False, allow_infinity=False),
    width=st.one_of(st.none(), st.integers(min_value=1, max_value=64)),
    signed=st.booleans(),
)
def test_hex_to_float__any_data_and_parameters_decode_or_raise_a_record_error(
    data: Any, factor: float, width: int | None, signed: bool
) -> None:
    point = DataPointParams(DEVICE, "sensor-mode", "J1", "sensor", "1", "hex_to_float",
                            None, factor, signed, width)  # fmt: skip
    try:
        ((_, value, _),) = decode_values({"data": data}, point, "1")
    except RecordError as exc:
        assert exc.reason
    else:
        assert value is not None and math.isfinite(value)
