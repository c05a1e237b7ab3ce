"""Redrive and reprocess marks: the Kafka headers a re-sent record carries through the pipeline.

A record sent again by ``python -m infra.tools.redrive`` carries ``f2-redrive``; one sent again
by ``python -m infra.tools.reprocess`` carries ``f2-reprocess``. Each value is compact JSON:

``f2-redrive``   ``{"count": n, "dead_letter": {"topic", "partition", "offset"}, "history": [...]}``
                 ``count``: how many times the record has been redriven, this time included;
                 ``dead_letter``: the letter it was redriven from; ``history``: every failure
                 so far, oldest first, each ``{"stage", "reason", "error", "failed_at",
                 "dead_letter"}`` (the last one is the letter it was redriven from).
``f2-reprocess`` ``{"run": id, "source": {"topic", "partition", "offset"}}``: the reprocess run
                 and the raw record it copies.

The connector hands record headers to the functions (``f2lib.contracts.invocation``); decode
copies the marks onto every record it produces and every dead letter it writes, and the sink
overwrites rows on the natural key for records marked ``f2-reprocess`` only. A dead letter of a
marked record holds the marks as ``redrive``/``reprocess`` and the history as ``history``, so
the next redrive knows the count and every earlier reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

REDRIVE_HEADER = "f2-redrive"
REPROCESS_HEADER = "f2-reprocess"
MARK_HEADERS = (REDRIVE_HEADER, REPROCESS_HEADER)
# A history entry keeps this much of an error text: enough to read, small enough for a header.
HISTORY_ERROR_LIMIT = 300
HISTORY_LIMIT = 20

KafkaHeaders = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a Kafka record is: topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_json(cls, value: Any) -> Position | None:
        if not isinstance(value, Mapping):
            return None
        topic, partition, offset = value.get("topic"), value.get("partition"), value.get("offset")
        if not isinstance(topic, str) or not _is_int(partition) or not _is_int(offset):
            return None
        return cls(topic, partition, offset)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Failure:
    """One earlier failure of a record: the stage, reason and error of one dead letter."""

    stage: str
    reason: str
    error: str
    failed_at: str | None = None
    dead_letter: Position | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "stage": self.stage,
            "reason": self.reason,
            "error": self.error[:HISTORY_ERROR_LIMIT],
            "failed_at": self.failed_at,
        }
        if self.dead_letter is not None:
            entry["dead_letter"] = self.dead_letter.to_json()
        return entry

    @classmethod
    def from_json(cls, value: Any) -> Failure | None:
        if not isinstance(value, Mapping):
            return None
        stage, reason = value.get("stage"), value.get("reason")
        if not isinstance(stage, str) or not isinstance(reason, str):
            return None
        error = value.get("error")
        failed_at = value.get("failed_at")
        return cls(
            stage,
            reason,
            error if isinstance(error, str) else "",
            failed_at if isinstance(failed_at, str) else None,
            Position.from_json(value.get("dead_letter")),
        )


@dataclass(frozen=True, slots=True)
class Redrive:
    """The ``f2-redrive`` mark: the redrive count, the letter redriven, every failure so far."""

    count: int
    dead_letter: Position
    history: tuple[Failure, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "dead_letter": self.dead_letter.to_json(),
            "history": [failure.to_json() for failure in self.history[-HISTORY_LIMIT:]],
        }

    @classmethod
    def from_json(cls, value: Any) -> Redrive | None:
        if not isinstance(value, Mapping) or not _is_int(value.get("count")):
            return None
        where = Position.from_json(value.get("dead_letter"))
        if where is None:
            return None
        history = value.get("history")
        entries = history if isinstance(history, list) else []
        failures = tuple(f for f in map(Failure.from_json, entries) if f is not None)
        return cls(int(value["count"]), where, failures)


@dataclass(frozen=True, slots=True)
class Reprocess:
    """The ``f2-reprocess`` mark: the reprocess run and the raw record it copies."""

    run: str
    source: Position | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"run": self.run}
        if self.source is not None:
            value["source"] = self.source.to_json()
        return value

    @classmethod
    def from_json(cls, value: Any) -> Reprocess | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("run"), str):
            return None
        return cls(str(value["run"]), Position.from_json(value.get("source")))


@dataclass(frozen=True, slots=True)
class Marks:
    """The marks one record carries (either, both or none)."""

    redrive: Redrive | None = None
    reprocess: Reprocess | None = None

    def __bool__(self) -> bool:
        return self.redrive is not None or self.reprocess is not None

    @property
    def overwrite(self) -> bool:
        """True when the sink overwrites the rows of this record (a reprocess)."""
        return self.reprocess is not None

    def header_values(self) -> dict[str, str]:
        """The marks as header name -> text (the invocation element's ``headers``)."""
        values = {}
        if self.redrive is not None:
            values[REDRIVE_HEADER] = _dump(self.redrive.to_json())
        if self.reprocess is not None:
            values[REPROCESS_HEADER] = _dump(self.reprocess.to_json())
        return values

    def kafka_headers(self) -> KafkaHeaders:
        """The marks as kafka-python record headers."""
        return [(name, text.encode("utf-8")) for name, text in self.header_values().items()]

    def letter_fields(self) -> dict[str, Any]:
        """What a dead letter of a record with these marks adds: the marks and the history."""
        fields: dict[str, Any] = {}
        if self.redrive is not None:
            fields["redrive"] = {
                "count": self.redrive.count,
                "dead_letter": self.redrive.dead_letter.to_json(),
            }
            fields["history"] = [f.to_json() for f in self.redrive.history[-HISTORY_LIMIT:]]
        if self.reprocess is not None:
            fields["reprocess"] = self.reprocess.to_json()
        return fields

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> Marks:
        """The marks among header name -> text (unknown or malformed headers are ignored)."""
        if not headers:
            return NO_MARKS
        redrive = Redrive.from_json(_load(headers.get(REDRIVE_HEADER)))
        reprocess = Reprocess.from_json(_load(headers.get(REPROCESS_HEADER)))
        if redrive is None and reprocess is None:
            return NO_MARKS
        return cls(redrive, reprocess)

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes | None]] | None) -> Marks:
        """The marks among kafka-python record headers."""
        return cls.from_headers(header_text(headers))


NO_MARKS = Marks()


def header_text(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """kafka-python record headers as name -> text (the last value of a repeated name wins;
    bytes that are not UTF-8 are replaced)."""
    text: dict[str, str] = {}
    for name, value in headers or ():
        if value is not None:
            text[str(name)] = value.decode("utf-8", errors="replace")
    return text


def without_marks(headers: Sequence[tuple[str, bytes]]) -> KafkaHeaders:
    """``headers`` minus the mark headers (before setting new ones)."""
    return [(name, value) for name, value in headers if name not in MARK_HEADERS]


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
