"""Kafka topic names and configs, and record values: the raw MQTT record and the dead letter.

``iot_command_replies`` carries the devices' command replies (``ctrl-resp/<device>``) in the
same RawRecord format as ``raw_iot_data``, keyed ``f2-<mac>``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.marks import NO_MARKS, Failure, Marks, Position, Redrive, Reprocess
from f2lib.errors import RecordError
from f2lib.models import validation_summary

RAW_TOPIC = "raw_iot_data"
DECODED_TOPIC = "decoded_iot_data"
DEAD_LETTER_TOPIC = "iot_dead_letter"
COMMAND_REPLIES_TOPIC = "iot_command_replies"
# The topics the pipeline needs, created by the runtime and the deployments.
PIPELINE_TOPICS = (RAW_TOPIC, DECODED_TOPIC, DEAD_LETTER_TOPIC, COMMAND_REPLIES_TOPIC)
# The stage a dead letter names: where the record failed (the connector adds its function).
BRIDGE_STAGE = "bridge"
DECODE_STAGE = "decode"
SINK_STAGE = "sink"
CONNECTOR_STAGE_PREFIX = "connector:"
# Raw history and dead letters are kept long enough to be reprocessed and re-driven
# (``make reprocess``, ``make redrive``): this many days unless a deployment sets more.
REPLAYABLE_TOPICS = (RAW_TOPIC, DEAD_LETTER_TOPIC)
DEFAULT_RETENTION_DAYS = 7.0
DAY_MS = 24 * 60 * 60 * 1000


def retention_ms(days: float) -> int:
    """``retention.ms`` for a retention of ``days`` (at least one hour)."""
    return max(60 * 60 * 1000, round(days * DAY_MS))


def topic_configs(retention_days: float = DEFAULT_RETENTION_DAYS) -> dict[str, dict[str, str]]:
    """The topic configs the runtime and the deployments set: ``retention.ms`` of the
    replayable topics (the others keep the broker's default)."""
    return {name: {"retention.ms": str(retention_ms(retention_days))} for name in REPLAYABLE_TOPICS}


_SECOND: tuple[int, str] = (-1, "")  # the last second formatted: (epoch second, its ISO text)


def utc_now_iso() -> str:
    """Now as ``datetime.now(UTC).isoformat(timespec="microseconds")`` writes it; the date and
    time of day are formatted once a second (the bridge stamps every message)."""
    global _SECOND
    now = time.time()
    second = int(now)
    cached = _SECOND  # one tuple, replaced whole: threads never see half of it
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _SECOND = cached
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}+00:00"


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
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
        # Every field is already of its type: built without running validation again.
        return cls.model_construct(
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
        """The record's JSON (what ``model_dump_json`` writes, byte for byte), with orjson."""
        return orjson.dumps(
            {
                "topic": self.topic,
                "payload": self.payload,
                "payload_encoding": self.payload_encoding,
                "received_at": self.received_at,
                "qos": self.qos,
            }
        )


def raw_record_bytes(topic: str, payload: bytes, qos: int) -> bytes:
    """``RawRecord.from_mqtt(topic, payload, qos).to_bytes()`` without the model in between
    (the bridge's per-message path): the same JSON, byte for byte."""
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return orjson.dumps(
        {
            "topic": topic,
            "payload": text,
            "payload_encoding": encoding,
            "received_at": utc_now_iso(),
            "qos": qos,
        }
    )


def dead_letter(
    original: Any,
    *,
    stage: str,
    reason: str,
    error: str,
    key: str | None = None,
    source: dict[str, Any] | None = None,
    marks: Marks = NO_MARKS,
) -> dict[str, Any]:
    """A dead-letter value: the original record plus where, why and what failed.

    ``original`` is kept as it came (a decoded JSON value, or text when it was not JSON).
    A record that was redriven or reprocessed adds its marks (``redrive``, ``reprocess``) and
    the failures before this one (``history``, oldest first).
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
    letter.update(marks.letter_fields())
    return letter


class DeadLetterValue(BaseModel):
    """A dead letter read back from ``iot_dead_letter`` (what ``dead_letter`` wrote)."""

    model_config = ConfigDict(extra="ignore")

    stage: str
    reason: str
    error: str = ""
    failed_at: str | None = None
    key: str | None = None
    record: Any = None
    source: dict[str, Any] | None = None
    redrive: dict[str, Any] | None = None
    history: list[Any] | None = None
    reprocess: dict[str, Any] | None = None

    @classmethod
    def parse(cls, value: bytes | None) -> DeadLetterValue:
        """The letter in a record value; RecordError when it is not one."""
        if value is None:
            raise RecordError("dead letter has no value", stage="redrive")
        try:
            return cls.model_validate_json(value)
        except ValidationError as exc:
            message = f"not a dead letter: {validation_summary(exc)}"
            raise RecordError(message, stage="redrive") from exc

    @property
    def redrive_count(self) -> int:
        """How many times the failed record had been redriven (0 for a first failure)."""
        count = (self.redrive or {}).get("count")
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    def failures(self) -> tuple[Failure, ...]:
        """The failures before this letter, oldest first."""
        entries = (Failure.from_json(entry) for entry in self.history or ())
        return tuple(entry for entry in entries if entry is not None)

    def source_position(self) -> Position | None:
        """Where the failed record was read (the connector's and the functions' letters)."""
        return Position.from_json(self.source)

    def redriven_marks(self, position: Position) -> Marks:
        """The marks of this letter's record sent again: the redrive count one higher, this
        failure appended to the history, a reprocess mark kept."""
        failure = Failure(self.stage, self.reason, self.error, self.failed_at, position)
        redrive = Redrive(self.redrive_count + 1, position, (*self.failures(), failure))
        return Marks(redrive, Reprocess.from_json(self.reprocess))


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


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
            marks=self.record.marks,
        )
