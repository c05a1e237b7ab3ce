"""The shared Measurement model: timestamps, numbers with units, the natural key's non-null id."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from f2lib.models import Measurement, parse_number, parse_timestamp, validation_summary

BASE = {
    "time": "2023-05-26 18:34:04.928538",
    "device_id": "f2-e4fd45f654be",
    "connector_mode": "sensor-mode",
    "connector": "J3",
    "component_type": "sensor",
    "component_id": "3",
    "value": 21.5,
    "unit": "celsius",
    "topic": "cmnd/f2-e4fd45f654be/sensor-mode/J3/sensor-3",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-26 18:34:04.928538", datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)),
        ("2023-05-26 18:34:04", datetime(2023, 5, 26, 18, 34, 4, tzinfo=UTC)),
        ("2023-05-26T18:34:04.5Z", datetime(2023, 5, 26, 18, 34, 4, 500000, tzinfo=UTC)),
        ("2023-05-26T20:34:04+02:00", datetime(2023, 5, 26, 18, 34, 4, tzinfo=UTC)),
        ("2023-05-26 13:34:04.1-0500", datetime(2023, 5, 26, 18, 34, 4, 100000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp__seed_format_and_iso_8601_become_utc(
    text: str, expected: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_parse_timestamp__aware_datetime_is_converted_to_utc() -> None:
    zoned = datetime(2023, 5, 26, 20, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_timestamp(zoned) == datetime(2023, 5, 26, 18, 0, tzinfo=UTC)
    assert parse_timestamp(zoned).tzinfo == UTC


@pytest.mark.parametrize(
    "bad",
    ["", "yesterday", "2023-13-01 00:00:00", "2023-05-26", "26/05/2023 18:34", 1685126044, None],
)
def test_parse_timestamp__rejects_what_is_not_a_date_and_time(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("27.93 °C", 27.93),
        ("27.93°C", 27.93),
        ("-4", -4.0),
        ("1e3 Pa", 1000.0),
        (" 55 %", 55.0),
        (True, 1.0),
        (False, 0.0),
        (7, 7.0),
        (None, None),
    ],
)
def test_parse_number__numbers_bools_and_numeric_strings_with_units(
    raw: object, expected: float | None
) -> None:
    assert parse_number(raw) == expected


@pytest.mark.parametrize("bad", ["°C 27", "warm", "", "nan", float("nan"), math.inf, [1]])
def test_parse_number__rejects_non_numbers_and_non_finite(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_number(bad)


def test_measurement__accepts_value_with_unit_and_seed_timestamp() -> None:
    m = Measurement.model_validate({**BASE, "value": "27.93 °C"})
    assert m.value == 27.93
    assert m.time == datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)
    assert m.key == "f2-e4fd45f654be"


def test_measurement__timestamp_alias_is_accepted() -> None:
    data = {k: v for k, v in BASE.items() if k != "time"}
    m = Measurement.model_validate({**data, "timestamp": "2023-05-26T18:34:04Z"})
    assert m.time == datetime(2023, 5, 26, 18, 34, 4, tzinfo=UTC)


def test_measurement__null_component_id_becomes_empty_text() -> None:
    m = Measurement.model_validate({**BASE, "component_id": None})
    assert m.component_id == ""


def test_measurement__json_round_trip_is_lossless() -> None:
    m = Measurement.model_validate(BASE)
    assert Measurement.model_validate_json(m.to_json_bytes()) == m


def test_measurement__text_only_value_is_valid() -> None:
    m = Measurement.model_validate({**BASE, "value": None, "value_text": '"Hello World"'})
    assert (m.value, m.value_text) == (None, '"Hello World"')


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"value": None, "value_text": None}, "needs value or value_text"),
        ({"value_text": "a\x00b"}, "NUL"),
        ({"device_id": "f2-E4FD45F654BE"}, "device_id"),
        ({"connector": "J9"}, "connector"),
        ({"connector_mode": "party-mode"}, "connector_mode"),
        ({"time": "not a time"}, "time"),
        ({"value": "warm"}, "value"),
        ({"topic": ""}, "topic"),
    ],
)
def test_measurement__rejects_invalid_fields(change: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Measurement.model_validate({**BASE, **change})
    assert says in validation_summary(caught.value) or says in str(caught.value)


def test_validation_summary__is_one_line_without_input_values() -> None:
    with pytest.raises(ValidationError) as caught:
        Measurement.model_validate({"device_id": "secret-looking-input"})
    summary = validation_summary(caught.value)
    assert "\n" not in summary
    assert "secret-looking-input" not in summary
    assert "more)" in summary
