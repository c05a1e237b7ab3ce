"""Batch encoding, bounds (count, bytes, linger), headers and bisection of the connector."""

from __future__ import annotations

import base64
import json
from typing import NamedTuple

import pytest

from f2lib.contracts.invocation import ConnectorRecord, body_size, encode_record
from infra.services.connector.batching import Batch, BatchLimits, PartitionBuffer


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rec(offset: int, key: bytes | None = b"f2-a1b2c3d4e5f6", value: bytes | None = None) -> Rec:
    return Rec(
        "raw_iot_data", 2, offset, key, value if value is not None else b'{"n": %d}' % offset
    )


def test_encode_record__json_value_is_embedded_as_json_and_matches_the_f2lib_shape() -> None:
    element = encode_record(rec(5, value=b'{"topic": "cmnd/x", "payload": "{}"}'))
    decoded = json.loads(element.body)
    assert decoded == {
        "topic": "raw_iot_data",
        "partition": 2,
        "offset": 5,
        "key": "f2-a1b2c3d4e5f6",
        "value": {"topic": "cmnd/x", "payload": "{}"},
    }
    assert ConnectorRecord.model_validate(decoded).value == {"topic": "cmnd/x", "payload": "{}"}


@pytest.mark.parametrize("raw", [b"not json", b"NaN", b"\xff\xfe{"])
def test_encode_record__non_json_value_is_kept_as_text(raw: bytes) -> None:
    element = encode_record(rec(1, value=raw))
    assert isinstance(element.value, str)
    assert json.loads(element.body)["value"] == raw.decode("utf-8", errors="replace")


def test_encode_record__binary_key_travels_as_base64() -> None:
    element = encode_record(rec(1, key=b"\xff\x00"))
    assert element.key == base64.b64encode(b"\xff\x00").decode()
    assert element.key_is_b64
    headers = Batch((element,)).headers()
    assert headers["X-Kafka-Key"] == element.key
    assert headers["X-Kafka-Key-Enc"] == "b64"


def test_batch_body__is_the_json_array_of_its_records_in_offset_order() -> None:
    batch = Batch(tuple(encode_record(rec(i)) for i in range(3)))
    assert [item["offset"] for item in json.loads(batch.body())] == [0, 1, 2]
    assert body_size(batch.elements) == len(batch.body())


def test_batch_headers__name_first_offset_count_and_the_key_when_all_share_it() -> None:
    batch = Batch(tuple(encode_record(rec(i)) for i in (7, 8, 9)))
    assert batch.headers() == {
        "Content-Type": "application/json",
        "X-Topic": "raw_iot_data",
        "X-Kafka-Partition": "2",
        "X-Kafka-Offset": "7",
        "X-F2-Batch": "3",
        "X-Kafka-Key": "f2-a1b2c3d4e5f6",
    }


def test_batch_headers__omit_the_key_when_records_have_different_keys() -> None:
    batch = Batch((encode_record(rec(1)), encode_record(rec(2, key=b"f2-000000000000"))))
    assert "X-Kafka-Key" not in batch.headers()
    assert "X-Kafka-Key" not in Batch((encode_record(rec(1, key=None)),)).headers()


def test_batch_split__halves_in_order_and_refuses_a_single_record() -> None:
    batch = Batch(tuple(encode_record(rec(i)) for i in range(5)))
    left, right = batch.split()
    assert [e.offset for e in left.elements] == [0, 1]
    assert [e.offset for e in right.elements] == [2, 3, 4]
    with pytest.raises(ValueError):
        Batch((encode_record(rec(0)),)).split()


def test_buffer__is_due_when_the_count_bound_is_reached() -> None:
    clock = Clock()
    buffer = PartitionBuffer(BatchLimits(max_records=3, max_bytes=10**6, linger_s=10), clock)
    for i in range(2):
        buffer.add(encode_record(rec(i)))
    assert not buffer.ready()
    buffer.add(encode_record(rec(2)))
    buffer.add(encode_record(rec(3)))
    assert buffer.ready()
    first = buffer.take()
    assert first is not None and [e.offset for e in first.elements] == [0, 1, 2]
    assert len(buffer) == 1


def test_buffer__is_due_after_linger_even_when_small() -> None:
    clock = Clock()
    buffer = PartitionBuffer(BatchLimits(max_records=100, max_bytes=10**6, linger_s=0.05), clock)
    assert buffer.due_in() is None
    buffer.add(encode_record(rec(0)))
    assert buffer.due_in() == pytest.approx(0.05)
    clock.now += 0.03
    buffer.add(encode_record(rec(1)))
    assert not buffer.ready()
    clock.now += 0.02
    assert buffer.ready()
    batch = buffer.take()
    assert batch is not None and batch.count == 2
    assert buffer.due_in() is None


def test_buffer__cuts_batches_within_the_byte_bound() -> None:
    one = len(encode_record(rec(0)).body)
    limits = BatchLimits(max_records=100, max_bytes=2 + 3 * one + 2, linger_s=10)
    buffer = PartitionBuffer(limits, Clock())
    for i in range(7):
        buffer.add(encode_record(rec(i)))
    assert buffer.ready()
    sizes = []
    while (batch := buffer.take()) is not None:
        assert len(batch.body()) <= limits.max_bytes
        sizes.append(batch.count)
    assert sizes == [3, 3, 1]


def test_buffer__sends_an_oversized_record_alone() -> None:
    limits = BatchLimits(max_records=100, max_bytes=64, linger_s=10)
    buffer = PartitionBuffer(limits, Clock())
    buffer.add(encode_record(rec(0, value=b'{"big": "' + b"x" * 200 + b'"}')))
    buffer.add(encode_record(rec(1)))
    first = buffer.take()
    assert first is not None and first.count == 1 and first.first_offset == 0
    second = buffer.take()
    assert second is not None and second.first_offset == 1
