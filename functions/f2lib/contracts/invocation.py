"""The connector -> function invocation: a batch of Kafka records, encoded and decoded here.

Body: a JSON array of ``{"topic", "partition", "offset", "key", "value"}`` (one element per
record, in offset order, all of one partition). Headers: those OpenFaaS's Kafka connector sets
for one record (``X-Topic``, ``X-Kafka-Partition``, ``X-Kafka-Offset``, ``X-Kafka-Key``,
``X-Kafka-Key-Enc: b64`` for a key that is not UTF-8), describing the first record, and
``X-F2-Batch: <count>``. A body that is not an array is one record's value, as OpenFaaS's own
connector sends it; the handlers accept both.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from f2lib.errors import JSON_DECODE_ERRORS, BatchError

BATCH_HEADER = "X-F2-Batch"
TOPIC_HEADER = "X-Topic"
PARTITION_HEADER = "X-Kafka-Partition"
OFFSET_HEADER = "X-Kafka-Offset"
KEY_HEADER = "X-Kafka-Key"
KEY_ENCODING_HEADER = "X-Kafka-Key-Enc"


class KafkaRecord(Protocol):
    """The fields of kafka-python's ``ConsumerRecord`` a batch needs."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Element:
    """One record encoded as an element of the batch body (a ``ConnectorRecord`` as JSON)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    key_is_b64: bool
    value: Any
    body: bytes


def encode_record(record: KafkaRecord) -> Element:
    """Encode a Kafka record: the value parsed as JSON when it is JSON, else kept as text."""
    key: str | None = None
    key_is_b64 = False
    if record.key is not None:
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            key, key_is_b64 = base64.b64encode(record.key).decode("ascii"), True
    if record.value is not None:
        # Fast path: UTF-8 JSON (what the pipeline writes) is embedded as it came, once parsed
        # to check it; the element is the same JSON the ConnectorRecord model would write.
        try:
            value = _JSON.decode(record.value.decode("utf-8"))
        except JSON_DECODE_ERRORS:
            pass
        else:
            body = b'{"topic":%b,"partition":%d,"offset":%d,"key":%b,"value":%b}' % (
                json.dumps(record.topic).encode(),
                record.partition,
                record.offset,
                json.dumps(key).encode(),
                record.value,
            )
            return Element(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=key,
                key_is_b64=key_is_b64,
                value=value,
                body=body,
            )
    value = None
    if record.value is not None:
        try:
            value = json.loads(record.value, parse_constant=_reject_constant)
        except JSON_DECODE_ERRORS:
            value = record.value.decode("utf-8", errors="replace")
    element = ConnectorRecord(
        topic=record.topic, partition=record.partition, offset=record.offset, key=key, value=value
    )
    return Element(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        key_is_b64=key_is_b64,
        value=value,
        body=element.model_dump_json().encode("utf-8"),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def batch_body(elements: Sequence[Element]) -> bytes:
    """The JSON array of the elements, as the function receives it."""
    return b"[" + b",".join(element.body for element in elements) + b"]"


def body_size(elements: Sequence[Element]) -> int:
    """Bytes of the JSON array holding ``elements``."""
    return 2 + sum(len(element.body) for element in elements) + max(0, len(elements) - 1)


def batch_headers(elements: Sequence[Element]) -> dict[str, str]:
    """The headers OpenFaaS's connector sets (for the first record) plus the batch marker."""
    first = elements[0]
    headers = {
        "Content-Type": "application/json",
        TOPIC_HEADER: first.topic,
        PARTITION_HEADER: str(first.partition),
        OFFSET_HEADER: str(first.offset),
        BATCH_HEADER: str(len(elements)),
    }
    keys = {(element.key, element.key_is_b64) for element in elements}
    if len(keys) == 1:
        ((key, key_is_b64),) = keys
        if key is not None:
            headers[KEY_HEADER] = key
            if key_is_b64:
                headers[KEY_ENCODING_HEADER] = "b64"
    return headers


class ConnectorRecord(BaseModel):
    """One Kafka record as a function receives it: an element of the connector's batch body.

    The batch is a JSON array of ``{"topic", "partition", "offset", "key", "value"}`` where
    ``topic`` is the Kafka topic, ``key`` the record key as text (``f2-<mac>``) and ``value`` the
    record's value as JSON (an object: a RawRecord on ``raw_iot_data``, a Measurement on
    ``decoded_iot_data``), or as a string when the value was not JSON.
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: Any = Field(...)

    def source(self) -> dict[str, Any]:
        """Where the record came from, as dead letters report it."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, dict):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        value = lowered.get(name.lower())
    return None if value is None else str(value)


def _int_header(headers: Any, name: str) -> int | None:
    value = _header(headers, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def single_record(body: bytes, headers: Any) -> ConnectorRecord:
    """The one record of a per-message invocation (OpenFaaS's connector): body = the value.

    ``X-Topic``, ``X-Kafka-Partition``, ``X-Kafka-Offset`` and ``X-Kafka-Key`` (base64 when
    ``X-Kafka-Key-Enc: b64``) describe it. A body that is not JSON is kept as text, so that it
    is dead-lettered rather than refused.
    """
    key = _header(headers, KEY_HEADER)
    if key is not None and (_header(headers, KEY_ENCODING_HEADER) or "").lower() == "b64":
        with contextlib.suppress(ValueError):
            key = base64.b64decode(key, validate=True).decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(body)
    except JSON_DECODE_ERRORS:
        value = body.decode("utf-8", errors="replace")
    return ConnectorRecord(
        topic=_header(headers, TOPIC_HEADER),
        partition=_int_header(headers, PARTITION_HEADER),
        offset=_int_header(headers, OFFSET_HEADER),
        key=key,
        value=value,
    )


def parse_invocation(body: bytes, headers: Any) -> list[ConnectorRecord]:
    """The records of a function invocation: a JSON array (a batch) or one record's value.

    Raises BatchError (HTTP 400) for an empty body, a batch that is not valid JSON, or a batch
    element that is not a record object; the connector then splits the batch to find it.
    """
    if not body or not body.strip():
        raise BatchError("empty request body")
    if not body.lstrip().startswith(b"["):
        return [single_record(body, headers)]
    try:
        items = json.loads(body)
    except JSON_DECODE_ERRORS as exc:
        raise BatchError(f"batch body is not valid JSON: {exc}") from exc
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "value" not in item:
            raise BatchError(f"batch element {index} is not a record object with a value")
        try:
            records.append(ConnectorRecord.model_validate(item))
        except ValueError as exc:
            raise BatchError(f"batch element {index} is not a valid record: {exc}") from exc
    return records
