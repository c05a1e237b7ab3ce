"""Kafka record shapes: the raw MQTT record, dead letters, and the device key taken from a topic."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from f2lib.errors import BatchError, RecordError

RAW_TOPIC = "raw_iot_data"
DECODED_TOPIC = "decoded_iot_data"
DEAD_LETTER_TOPIC = "iot_dead_letter"

_DEVICE_IN_TOPIC = re.compile(r"^cmnd/(f2-[0-9a-f]{12})(?:/|$)")


def device_key(mqtt_topic: str) -> str | None:
    """The Kafka key ``f2-<mac>`` of an F2 topic, or None when the topic names no device."""
    match = _DEVICE_IN_TOPIC.match(mqtt_topic)
    return match.group(1) if match else None


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class RawRecord(BaseModel):
    """The value of a ``raw_iot_data`` record: one MQTT message as the bridge received it."""

    topic: str
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    received_at: str = Field(default_factory=utc_now_iso)
    qos: int = 1

    @classmethod
    def from_mqtt(
        cls, topic: str, payload: bytes, qos: int, received_at: str | None = None
    ) -> RawRecord:
        try:
            text, encoding = payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
        return cls(
            topic=topic,
            payload=text,
            payload_encoding=encoding,
            received_at=received_at or utc_now_iso(),
            qos=qos,
        )

    def payload_bytes(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def dead_letter(
    original: Any,
    *,
    stage: str,
    reason: str,
    error: str,
    key: str | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A dead-letter value: the original record plus where, why and what failed.

    ``original`` is kept as it came (a decoded JSON value, or text when it was not JSON).
    """
    letter: dict[str, Any] = {
        "stage": stage,
        "reason": reason,
        "error": error,
        "failed_at": utc_now_iso(),
        "key": key,
        "record": original,
    }
    if source:
        letter["source"] = source
    return letter


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


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
    key = _header(headers, "X-Kafka-Key")
    if key is not None and (_header(headers, "X-Kafka-Key-Enc") or "").lower() == "b64":
        with contextlib.suppress(ValueError):
            key = base64.b64decode(key, validate=True).decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(body)
    except ValueError:
        value = body.decode("utf-8", errors="replace")
    return ConnectorRecord(
        topic=_header(headers, "X-Topic"),
        partition=_int_header(headers, "X-Kafka-Partition"),
        offset=_int_header(headers, "X-Kafka-Offset"),
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
    except ValueError as exc:
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, and why."""

    record: ConnectorRecord
    stage: str
    reason: str
    error: str
    key: str | None = None

    @classmethod
    def from_error(
        cls, record: ConnectorRecord, error: RecordError, key: str | None = None
    ) -> DeadLetter:
        return cls(record, error.stage, error.reason, str(error), key or record.key)

    def to_value(self) -> dict[str, Any]:
        """The value of the ``iot_dead_letter`` record."""
        return dead_letter(
            self.record.value,
            stage=self.stage,
            reason=self.reason,
            error=self.error,
            key=self.key,
            source=self.record.source(),
        )
