"""The connector -> function invocation: a batch of Kafka records, encoded and decoded here.

Body: a JSON array of ``{"topic", "partition", "offset", "key", "value"}`` (one element per
record, in offset order, all of one partition), plus ``"headers": {name: text}`` when the record
has Kafka headers (the redrive and reprocess marks of ``f2lib.contracts.marks`` travel so); a
body without ``headers`` is as valid as before. HTTP headers: those OpenFaaS's Kafka connector sets
for one record (``X-Topic``, ``X-Kafka-Partition``, ``X-Kafka-Offset``, ``X-Kafka-Key``,
``X-Kafka-Key-Enc: b64`` for a key that is not UTF-8), describing the first record, and
``X-F2-Batch: <count>``. A body that is not an array is one record's value, as OpenFaaS's own
connector sends it; the handlers accept both.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, Field

from f2lib.contracts.marks import Marks, header_text
from f2lib.errors import BatchError
from f2lib.trusted import trusted

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


def record_headers(record: KafkaRecord) -> dict[str, str] | None:
    """The record's Kafka headers as name -> text, None when it has none (kafka-python's
    ``ConsumerRecord.headers`` is a list of ``(str, bytes)``; test doubles may lack it)."""
    headers = getattr(record, "headers", None)
    if not headers:
        return None
    return header_text(headers) or None


@dataclass(frozen=True, slots=True)
class Element:
    """One record encoded as an element of the batch body (a ``ConnectorRecord`` as JSON).

    A JSON value travels as the bytes it came in (``raw_value``, checked once, never
    re-encoded); ``value`` parses it only when asked (a dead letter needs it). A value that is
    not JSON is kept as text (``text_value``).
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    key_is_b64: bool
    body: bytes
    raw_value: bytes | None = None
    text_value: str | None = None
    headers: dict[str, str] | None = None

    @property
    def value(self) -> Any:
        if self.raw_value is not None:
            return orjson.loads(self.raw_value)
        return self.text_value


@lru_cache(maxsize=4096)
def _json_text(text: str | None) -> bytes:
    """A topic or key as JSON text (few and repeated: device ids, topic names)."""
    return orjson.dumps(text)


def encode_record(record: KafkaRecord) -> Element:
    """Encode a Kafka record: a JSON value embedded as it came, else the value kept as text."""
    key: str | None = None
    key_is_b64 = False
    headers = record_headers(record)
    if record.key is not None:
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            key, key_is_b64 = base64.b64encode(record.key).decode("ascii"), True
    raw = record.value
    if raw is not None:
        # What the pipeline writes is UTF-8 JSON: checked (orjson, which refuses NaN and
        # Infinity as JSON does), then embedded byte for byte.
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            body = b'{"topic":%b,"partition":%d,"offset":%d,"key":%b,"value":%b%b}' % (
                _json_text(record.topic),
                record.partition,
                record.offset,
                _json_text(key),
                raw,
                _headers_member(headers),
            )
            return Element(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=key,
                key_is_b64=key_is_b64,
                body=body,
                raw_value=raw,
                headers=headers,
            )
    text = None if raw is None else raw.decode("utf-8", errors="replace")
    element = ConnectorRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value=text,
        headers=headers,
    )
    return Element(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        key_is_b64=key_is_b64,
        body=element.model_dump_json(exclude=None if headers else {"headers"}).encode("utf-8"),
        text_value=text,
        headers=headers,
    )


def _headers_member(headers: dict[str, str] | None) -> bytes:
    if not headers:
        return b""
    return b',"headers":' + orjson.dumps(headers)


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
    ``decoded_iot_data``), or as a string when the value was not JSON; ``headers`` (optional)
    the record's Kafka headers as name -> text.
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: Any = Field(...)
    headers: dict[str, str] | None = None

    @property
    def marks(self) -> Marks:
        """The redrive/reprocess marks among the record's headers."""
        return Marks.from_headers(self.headers)

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
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
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
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BatchError(f"batch body is not valid JSON: {exc}") from exc
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "value" not in item:
            raise BatchError(f"batch element {index} is not a record object with a value")
        if _well_typed(item):
            # What the connector sends: the model's checks would pass and change nothing.
            records.append(trusted(ConnectorRecord, {**item, "headers": None}))
            continue
        try:
            records.append(ConnectorRecord.model_validate(item))
        except ValueError as exc:
            raise BatchError(f"batch element {index} is not a valid record: {exc}") from exc
    return records


_RECORD_FIELDS = frozenset({"topic", "partition", "offset", "key", "value"})


def _well_typed(item: dict[str, Any]) -> bool:
    """True when ``item`` has exactly the record's fields, each of its type (or null)."""
    if item.keys() != _RECORD_FIELDS:
        return False
    topic, key = item["topic"], item["key"]
    partition, offset = item["partition"], item["offset"]
    return (
        (topic is None or type(topic) is str)
        and (key is None or type(key) is str)
        and (partition is None or type(partition) is int)
        and (offset is None or type(offset) is int)
    )
