"""Function invocations: the connector's batch body, or one record with OpenFaaS's headers."""

from __future__ import annotations

import base64
import json

import pytest

from f2lib.contracts.invocation import parse_invocation
from f2lib.errors import BatchError

RAW = {"topic": "cmnd/f2-e4fd45f654be/alarm-mode/J2/siren-1", "payload": "{}", "qos": 1}


def test_batch_body__each_element_becomes_a_record() -> None:
    body = json.dumps(
        [
            {
                "topic": "raw_iot_data",
                "partition": 2,
                "offset": 40,
                "key": "f2-e4fd45f654be",
                "value": RAW,
            },
            {"topic": "raw_iot_data", "partition": 2, "offset": 41, "key": None, "value": "text"},
        ]
    ).encode()
    records = parse_invocation(body, {})
    assert [(r.partition, r.offset, r.key) for r in records] == [
        (2, 40, "f2-e4fd45f654be"),
        (2, 41, None),
    ]
    assert records[0].value == RAW
    assert records[1].value == "text"
    assert records[0].source() == {"topic": "raw_iot_data", "partition": 2, "offset": 40}


def test_single_record__body_is_the_value_and_headers_say_where_it_came_from() -> None:
    headers = {
        "X-Topic": "raw_iot_data",
        "X-Kafka-Partition": "1",
        "X-Kafka-Offset": "99",
        "X-Kafka-Key": "f2-e4fd45f654be",
    }
    [record] = parse_invocation(json.dumps(RAW).encode(), headers)
    assert (record.topic, record.partition, record.offset, record.key) == (
        "raw_iot_data",
        1,
        99,
        "f2-e4fd45f654be",
    )
    assert record.value == RAW


def test_single_record__headers_are_case_insensitive_and_b64_keys_decoded() -> None:
    headers = {
        "x-topic": "raw_iot_data",
        "x-kafka-key": base64.b64encode(b"f2-e4fd45f654be").decode(),
        "x-kafka-key-enc": "b64",
        "x-kafka-offset": "not a number",
    }
    [record] = parse_invocation(json.dumps(RAW).encode(), headers)
    assert (record.topic, record.key, record.offset) == ("raw_iot_data", "f2-e4fd45f654be", None)


def test_single_record__non_json_body_is_kept_as_text_to_be_dead_lettered() -> None:
    [record] = parse_invocation(b"\xffnot json", {})
    assert isinstance(record.value, str)
    assert "not json" in record.value


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"[not json",
        b'[{"topic": "raw_iot_data"}]',
        b"[1, 2]",
        b'[{"value": {}, "partition": "first"}]',
    ],
)
def test_malformed_batch_is_a_batch_error(body: bytes) -> None:
    with pytest.raises(BatchError):
        parse_invocation(body, {})


def test_empty_batch_is_valid() -> None:
    assert parse_invocation(b"[]", {}) == []
