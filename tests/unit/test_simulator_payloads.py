"""The simulator's payloads: shape per component kind, hex round trip, determinism, decoding."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from decode.decoding import decode_batch, parse_bytes_literal
from decode.params import DataPointParams, DeviceParameters
from f2lib.contracts.devices import MODELS
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import RawRecord
from f2lib.contracts.topics import parse_topic
from infra.tools.simulator.catalogue import BUILTIN_CATALOGUE, ComponentSpec
from infra.tools.simulator.fleet import device_rng
from infra.tools.simulator.payloads import (
    MessageStream,
    SensorBehaviour,
    behaviour_for,
    bytes_literal,
    decode_hex,
    encode_hex,
    format_timestamp,
)

DEVICE = "f2-02f200000001"
TIMESTAMP_RE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$"


def _spec(encoding: str, ctype: str, cid: str | None = "1", **kw: object) -> ComponentSpec:
    mode = {"sensor": "sensor-mode", "siren": "alarm-mode", "motion-sensor": "alarm-mode"}.get(
        ctype, "access-control-mode"
    )
    return ComponentSpec(mode, "J1", ctype, cid, encoding, **kw)  # type: ignore[arg-type]


def _fixed_clock(start: datetime | None = None):
    moment = start or datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)
    return lambda: moment


def _params(device_id: str, components: tuple[ComponentSpec, ...]) -> DeviceParameters:
    return DeviceParameters.from_rows(
        DataPointParams(
            device_id,
            c.connector_mode,
            c.connector,
            c.component_type,
            c.component_id,
            c.encoding_type,
            c.units,
            c.scaling_factor,
            c.value_signed,
            c.value_width_bits,
        )
        for c in components
    )


def _record(topic: str, payload: bytes, offset: int) -> ConnectorRecord:
    raw = RawRecord.from_mqtt(topic, payload, 1)
    return ConnectorRecord(
        topic="raw_iot_data",
        partition=0,
        offset=offset,
        key=parse_topic(topic).device_id,
        value=raw.model_dump(),
    )


# --- shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["strike", "siren", "motion-sensor"])
def test_status_components_send_timestamp_and_bool_status(ctype: str) -> None:
    behaviour = behaviour_for(_spec("boolean", ctype), random.Random(1))
    seen = {behaviour.fields()["status"] for _ in range(200)}
    assert seen == {True, False}
    assert set(behaviour.fields()) == {"status"}


def test_strike_alternates_energised_and_released() -> None:
    behaviour = behaviour_for(_spec("boolean", "strike"), random.Random(3))
    states = [behaviour.fields()["status"] for _ in range(6)]
    assert states == [True, False, True, False, True, False]


def test_door_sensor_map_changes_one_member_per_event_and_sends_all() -> None:
    spec = _spec("boolean_map", "door-sensors", None, members=("door-sensor-1", "door-sensor-2"))
    behaviour = behaviour_for(spec, random.Random(2))
    before = dict.fromkeys(spec.members, False)
    for _ in range(20):
        fields = behaviour.fields()
        assert set(fields) == {"door-sensor-1", "door-sensor-2"}
        assert all(isinstance(v, bool) for v in fields.values())
        assert sum(fields[k] != before[k] for k in fields) == 1
        before = fields


def test_map_members_default_to_singular_names_when_the_template_has_no_pins() -> None:
    assert _spec("boolean_map", "exit-buttons", None).member_names() == ("exit-button-1",)
    assert _spec("boolean_map", "door-sensors", None).member_names() == (
        "door-sensor-1",
        "door-sensor-2",
    )


def test_reader_data_is_a_python_bytes_literal_of_printable_card_data() -> None:
    behaviour = behaviour_for(_spec("raw_string", "reader"), random.Random(5))
    for _ in range(100):
        data = behaviour.fields()["data"]
        assert data.startswith(("b'", 'b"'))
        content = parse_bytes_literal(data)
        assert content and content.decode("ascii").isprintable()


def test_bytes_literal_matches_the_seed_example() -> None:
    assert bytes_literal(b'"Hello World"') == "b'\"Hello World\"'"
    assert json.dumps({"data": bytes_literal(b'"Hello World"')}) == (
        '{"data": "b\'\\"Hello World\\"\'"}'
    )


def test_timestamps_use_the_devices_format_in_utc() -> None:
    zoned = datetime(2023, 5, 26, 20, 34, 4, 928538, tzinfo=UTC) + timedelta(0)
    assert format_timestamp(zoned) == "2023-05-26 20:34:04.928538"
    from zoneinfo import ZoneInfo

    paris = datetime(2023, 5, 26, 20, 34, 4, 928538, tzinfo=ZoneInfo("Europe/Paris"))
    assert format_timestamp(paris) == "2023-05-26 18:34:04.928538"


# --- hex ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scale", "width", "signed", "expected"),
    [
        (21.5, 0.1, 16, True, "00D7"),
        (-4.0, 0.1, 16, True, "FFD8"),
        (45.2, 0.1, 16, False, "01C4"),
        (1013.2, 0.1, 32, False, "00002794"),
        (600, 1.0, 16, False, "0258"),
        (-1, 1.0, 12, True, "FFF"),
    ],
)
def test_encode_hex_pads_to_width_and_uses_twos_complement(
    value: float, scale: float, width: int, signed: bool, expected: str
) -> None:
    assert encode_hex(value, scale, width, signed) == expected


def test_encode_hex_clamps_values_beyond_the_register() -> None:
    assert encode_hex(5000.0, 0.1, 16, True) == "7FFF"
    assert encode_hex(-5000.0, 0.1, 16, True) == "8000"
    assert encode_hex(-3.0, 1.0, 16, False) == "0000"


@pytest.mark.parametrize(
    ("width", "signed", "scale"),
    [
        (16, True, 0.1),
        (16, False, 0.1),
        (32, False, 0.1),
        (8, True, 0.5),
        (None, False, 1.0),
        (24, True, 0.01),
    ],
)
def test_hex_round_trip_gives_the_value_back_within_half_a_step(
    width: int | None, signed: bool, scale: float
) -> None:
    rng = random.Random(7)
    bits = width or 16
    low = -(2 ** (bits - 1)) * scale if signed else 0.0
    high = (2 ** (bits - 1) - 1) * scale if signed else (2**bits - 1) * scale
    for _ in range(500):
        value = rng.uniform(low, high)
        text = encode_hex(value, scale, width, signed)
        assert len(text) == (bits + 3) // 4
        assert abs(decode_hex(text, scale, width, signed) - value) <= scale / 2 + 1e-9


@pytest.mark.parametrize(
    ("units", "low", "high"),
    [
        ("celsius", -20, 50),
        ("percent", 5, 95),
        ("hPa", 950, 1060),
        ("ppm", 400, 2500),
        ("lux", 0, 2000),
    ],
)
def test_sensor_values_stay_plausible_for_their_unit(units: str, low: float, high: float) -> None:
    spec = _spec(
        "hex_to_float",
        "sensor",
        "1",
        units=units,
        scaling_factor=0.1 if units in ("celsius", "percent", "hPa") else 1.0,
        value_signed=units == "celsius",
        value_width_bits=32 if units == "hPa" else 16,
    )
    behaviour = behaviour_for(spec, random.Random(11))
    assert isinstance(behaviour, SensorBehaviour)
    values = [
        decode_hex(
            behaviour.fields()["data"],
            spec.scaling_factor,
            spec.value_width_bits,
            spec.value_signed,
        )
        for _ in range(2000)
    ]
    assert low - 0.1 <= min(values) and max(values) <= high + 0.1
    assert max(values) - min(values) > 0  # it moves


# --- streams ------------------------------------------------------------------------------------


def test_stream_sends_every_component_once_before_repeating() -> None:
    components = BUILTIN_CATALOGUE["F2-215"].components
    stream = MessageStream(DEVICE, components, random.Random(1), _fixed_clock())
    first = [stream.next_message().topic for _ in components]
    assert sorted(first) == sorted(c.topic(DEVICE) for c in components)


def test_same_seed_gives_the_same_traffic_and_another_seed_differs() -> None:
    components = BUILTIN_CATALOGUE["F2-403"].components

    def traffic(seed: int) -> list[tuple[str, bytes]]:
        stream = MessageStream(DEVICE, components, device_rng(seed, DEVICE), _fixed_clock())
        return [(m.topic, m.payload) for m in (stream.next_message() for _ in range(50))]

    assert traffic(42) == traffic(42)
    assert traffic(42) != traffic(43)


def test_timestamps_strictly_increase_even_when_the_clock_stands_still() -> None:
    stream = MessageStream(
        DEVICE, BUILTIN_CATALOGUE["F2-212"].components, random.Random(1), _fixed_clock()
    )
    stamps = [stream.next_message().timestamp for _ in range(20)]
    assert stamps == sorted(set(stamps))
    assert stamps[0] == "2023-05-26 18:34:04.928538"
    assert stamps[1] == "2023-05-26 18:34:04.928539"


@pytest.mark.parametrize("model", MODELS)
def test_every_model_s_traffic_decodes_without_dead_letters(model: str) -> None:
    components = BUILTIN_CATALOGUE[model].components
    stream = MessageStream(DEVICE, components, random.Random(model), _fixed_clock())
    messages = [stream.next_message() for _ in range(len(components) * 8)]
    records = [_record(m.topic, m.payload, i) for i, m in enumerate(messages)]

    result = decode_batch(records, _params(DEVICE, components))

    assert result.dead_letters == []
    assert len(result.measurements) == sum(m.measurements for m in messages)
    payload = json.loads(messages[0].payload)
    assert payload["timestamp"] == "2023-05-26 18:34:04.928538"
    for measurement in result.measurements:
        assert measurement.device_id == DEVICE
        if measurement.component_type == "sensor":
            assert measurement.value is not None and -20 <= measurement.value <= 2500
        if measurement.component_type == "reader":
            assert measurement.value_text and measurement.value_text.isprintable()
        if measurement.component_type in (
            "strike",
            "siren",
            "motion-sensor",
            "door-sensors",
            "exit-buttons",
        ):
            assert measurement.value in (0.0, 1.0)


def test_decoded_sensor_value_equals_the_simulated_one_within_the_scale() -> None:
    spec = _spec(
        "hex_to_float",
        "sensor",
        "3",
        units="celsius",
        scaling_factor=0.1,
        value_signed=True,
        value_width_bits=16,
    )
    stream = MessageStream(DEVICE, (spec,), random.Random(9), _fixed_clock())
    behaviour = stream.behaviours[0]
    assert isinstance(behaviour, SensorBehaviour)
    message = stream.next_message()
    result = decode_batch([_record(message.topic, message.payload, 0)], _params(DEVICE, (spec,)))
    assert result.measurements[0].value == pytest.approx(behaviour.value, abs=0.05)
    assert result.measurements[0].unit == "celsius"
