"""Fuzzed MQTT messages into the bridge's routing: a record or a dead letter, never a crash."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bridge.service import route_message, topic_text
from f2lib.contracts.records import RawRecord
from f2lib.contracts.topics import device_key
from tests.fuzz_support import PAYLOADS, mqtt_topics


@given(topic=mqtt_topics(), payload=PAYLOADS, qos=st.integers(min_value=0, max_value=2))
def test_route_message__every_message_is_a_record_or_a_dead_letter_with_a_reason(
    topic: str, payload: bytes, qos: int
) -> None:
    routed = route_message(
        topic, payload, qos, raw_topic="raw", dead_letter_topic="dlq", replies_topic="replies"
    )
    key = device_key(topic)
    assert routed.key == (key.encode() if key else None)
    if routed.kind == "dead_letter":
        letter = json.loads(routed.value)
        assert routed.topic == "dlq" and routed.reason and letter["reason"] == routed.reason
        assert letter["stage"] == "bridge" and letter["error"]
        assert letter["record"]["topic"] == topic
    else:
        assert (routed.kind, routed.topic) in (("raw", "raw"), ("reply", "replies"))
        record = RawRecord.model_validate_json(routed.value)
        assert record.topic == topic and record.qos == qos
        assert record.payload_bytes() == payload, "the payload travels unchanged"


@given(payload=PAYLOADS)
def test_route_message__a_valid_topic_takes_any_payload_as_it_is(payload: bytes) -> None:
    topic = "cmnd/f2-a1b2c3d4e5f6/sensor-mode/J2/sensor-1"
    routed = route_message(topic, payload, 1, raw_topic="raw", dead_letter_topic="dlq")
    assert routed.kind == "raw"
    assert RawRecord.model_validate_json(routed.value).payload_bytes() == payload


@given(raw=st.binary(max_size=80), payload=PAYLOADS)
def test_route_message__topics_as_bytes_off_the_wire_are_routed_never_a_crash(
    raw: bytes, payload: bytes
) -> None:
    topic = topic_text(raw)
    routed = route_message(topic, payload, 1, raw_topic="raw", dead_letter_topic="dlq")
    assert routed.kind in ("raw", "dead_letter")
    if routed.kind == "dead_letter":
        assert json.loads(routed.value)["record"]["topic"] == topic
