"""One topic grammar: the bridge and the decoder give every topic the same verdict."""

from __future__ import annotations

import json

import pytest

from bridge.service import route_message
from decode.decoding import decode_batch
from decode.params import DeviceParameters
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import RawRecord

DEVICE = "f2-a1b2c3d4e5f6"
PAYLOAD = json.dumps({"timestamp": "2023-05-26 18:34:04.928538", "status": True}).encode()

VALID = [
    f"cmnd/{DEVICE}/access-control-mode/J1/strike-1",
    f"cmnd/{DEVICE}/access-control-mode/J1/door-sensors",
    f"cmnd/{DEVICE}/access-control-mode/J2/reader-2",
    f"cmnd/{DEVICE}/access-control-mode/J3/exit-buttons",
    f"cmnd/{DEVICE}/alarm-mode/J2/siren-1",
    f"cmnd/{DEVICE}/alarm-mode/J4/motion-sensor-3",
    f"cmnd/{DEVICE}/sensor-mode/J3/sensor-12",
    f"cmnd/{DEVICE}/sensor-mode/J4/sensor-9999",
]
INVALID = [
    "",
    f"cmnd/{DEVICE}/access-control-mode/J1",
    f"cmnd/{DEVICE}/access-control-mode/J1/strike-1/extra",
    f"stat/{DEVICE}/access-control-mode/J1/strike-1",
    f"ctrl/{DEVICE}/access-control-mode/J1/strike-1",
    f"ctrl-resp/{DEVICE}",
    "cmnd/f2-A1B2C3D4E5F6/access-control-mode/J1/strike-1",
    "cmnd/f2-a1b2c3d4e5/access-control-mode/J1/strike-1",
    "cmnd/a1b2c3d4e5f6/access-control-mode/J1/strike-1",
    f"cmnd/{DEVICE}/party-mode/J1/strike-1",
    f"cmnd/{DEVICE}/alarm-mode/J5/siren-1",
    f"cmnd/{DEVICE}/alarm-mode/J0/siren-1",
    f"cmnd/{DEVICE}/alarm-mode/J1/siren",
    f"cmnd/{DEVICE}/alarm-mode/J1/toaster-1",
    f"cmnd/{DEVICE}/alarm-mode/J1/",
    f"cmnd/{DEVICE}/access-control-mode/J1/door-sensors-1",
    f"cmnd/{DEVICE}/sensor-mode/J3/sensor-12345",
    f"cmnd/{DEVICE}/sensor-mode/J3/sensor-x",
]


def bridge_accepts(topic: str) -> bool:
    routed = route_message(topic, PAYLOAD, 1, raw_topic="raw", dead_letter_topic="dlq")
    if routed.kind == "dead_letter":
        assert routed.reason == "bad_topic"
        assert json.loads(routed.value)["stage"] == "bridge"
        return False
    assert routed.topic == "raw"
    return True


def decoder_accepts(topic: str) -> bool:
    raw = RawRecord(topic=topic, payload=PAYLOAD.decode())
    record = ConnectorRecord(topic="raw_iot_data", partition=0, offset=0, value=raw.model_dump())
    result = decode_batch([record], DeviceParameters({}))
    (letter,) = result.dead_letters  # no parameters: a valid topic is an unknown device
    assert letter.reason in ("bad_topic", "unknown_device")
    return letter.reason != "bad_topic"


@pytest.mark.parametrize("topic", VALID + INVALID)
def test_bridge_and_decoder__give_the_same_verdict(topic: str) -> None:
    expected = topic in VALID
    assert (bridge_accepts(topic), decoder_accepts(topic)) == (expected, expected)
