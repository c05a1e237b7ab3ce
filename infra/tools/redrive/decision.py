"""What a redrive does with one dead letter: where its record goes, with which marks, or why not.

Destinations: a letter of the bridge or of decode goes back to the raw topic (decode reads it
again; a command reply the bridge refused goes to the replies topic), one of the sink to the
decoded topic; the letters of the connector and of other functions go back to the topic they
were read from when it is one of those. The record keeps its key (so its device's order by
partition holds), and carries ``f2-redrive`` with the redrive count one higher and this
failure added to its history. A letter whose record was redriven ``max_redrives`` times
already stops there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from f2lib.contracts.marks import KafkaHeaders, Position
from f2lib.contracts.records import (
    BRIDGE_STAGE,
    CONNECTOR_STAGE_PREFIX,
    DECODE_STAGE,
    SINK_STAGE,
    DeadLetterValue,
    dump_json,
)
from f2lib.contracts.topics import REPLY_ROOT, topic_root

DEFAULT_MAX_REDRIVES = 3


class Outcome(StrEnum):
    """What became of one dead letter in a run."""

    SENT = "sent"
    WOULD_SEND = "would_send"  # a dry run
    AT_LIMIT = "at_limit"  # redriven max_redrives times already: reported, not sent
    ALREADY_SENT = "already_sent"  # sent by a run that was stopped before it committed
    ALREADY_REDRIVEN = "already_redriven"  # taken by a run of another selection
    NO_TARGET = "no_target"  # a stage the redrive does not know, or no record to send
    UNREADABLE = "unreadable"  # not a dead letter
    NOT_SELECTED = "not_selected"


@dataclass(frozen=True, slots=True)
class RedriveTopics:
    """The topics a redrive reads and writes."""

    dead_letter: str
    raw: str
    decoded: str
    replies: str

    @property
    def inputs(self) -> tuple[str, ...]:
        """The topics a redriven record may go to: where the pipeline's stages start."""
        return (self.raw, self.decoded, self.replies)


@dataclass(frozen=True, slots=True)
class Resend:
    """The record to send again: destination, key, value and headers."""

    topic: str
    key: str | None
    value: bytes
    headers: KafkaHeaders


def target_topic(letter: DeadLetterValue, topics: RedriveTopics) -> str | None:
    """The topic at the start of the stage the letter failed at, None for an unknown stage."""
    if letter.stage == BRIDGE_STAGE:
        record = letter.record if isinstance(letter.record, dict) else {}
        topic = record.get("topic")
        reply = isinstance(topic, str) and topic_root(topic) == REPLY_ROOT
        return topics.replies if reply else topics.raw
    if letter.stage == DECODE_STAGE:
        return topics.raw
    if letter.stage == SINK_STAGE:
        return topics.decoded
    source = letter.source_position()
    if source is not None and source.topic in topics.inputs:
        return source.topic
    if letter.stage.startswith(CONNECTOR_STAGE_PREFIX):
        function = letter.stage.removeprefix(CONNECTOR_STAGE_PREFIX)
        return {"decode": topics.raw, "sink": topics.decoded}.get(function)
    return None


def resend_of(letter: DeadLetterValue, position: Position, topics: RedriveTopics) -> Resend | None:
    """The record of ``letter`` (read at ``position``) as it is sent again; None when there is
    no destination or no record."""
    topic = target_topic(letter, topics)
    if topic is None or letter.record is None:
        return None
    record = letter.record
    value = record.encode("utf-8") if isinstance(record, str) else dump_json(record)
    return Resend(topic, letter.key, value, letter.redriven_marks(position).kafka_headers())


def at_limit(letter: DeadLetterValue, max_redrives: int) -> bool:
    """True when the letter's record was redriven ``max_redrives`` times already."""
    return letter.redrive_count >= max_redrives
