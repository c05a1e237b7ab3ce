"""What earlier redrive runs did, as Kafka keeps it: each selection's group offsets and metadata.

Every commit of a run stores, beside its group's offsets on the dead-letter topic, a metadata
string (JSON): ``{"v": 1, "selection": {...}, "max_redrives": n, "done": bool, "marks":
{"<topic>/<partition>": offset}}``. From it:

* every letter below a group's offset was decided by that group (sent, at its limit, or not
  selected); a letter below the offset of *another* selection's group that matches that
  selection and was under its limit was sent by it, and is not sent again;
* ``done: false`` says the run did not finish: what it sent after its last commit lies at or
  after ``marks`` in the destination partitions, where the next run finds the ``f2-redrive``
  headers naming those letters, and does not send them again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from f2lib.contracts.marks import Marks
from f2lib.contracts.records import DeadLetterValue
from f2lib.errors import StreamError
from infra.tools.redrive.selection import Selection
from infra.tools.replay.positions import read_range

logger = logging.getLogger(__name__)

METADATA_VERSION = 1
# Kafka refuses offset metadata beyond offset.metadata.max.bytes (4096 by default).
METADATA_LIMIT = 4000

Marks_ = dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class RunState:
    """The metadata a run commits with its offsets."""

    selection: Selection
    max_redrives: int
    done: bool
    marks: Marks_ = field(default_factory=dict)

    def to_metadata(self) -> str:
        value: dict[str, Any] = {
            "v": METADATA_VERSION,
            "selection": self.selection.to_json(),
            "max_redrives": self.max_redrives,
            "done": self.done,
            "marks": {f"{tp.topic}/{tp.partition}": offset for tp, offset in self.marks.items()},
        }
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        if len(text) > METADATA_LIMIT:
            count = len(self.marks)
            logger.warning("redrive marks dropped: %d destination partitions are too many", count)
            value["marks"] = None
            text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return text

    @classmethod
    def from_metadata(cls, text: str | None) -> RunState | None:
        try:
            value = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("v") != METADATA_VERSION:
            return None
        selection = Selection.from_json(value.get("selection"))
        limit = value.get("max_redrives")
        if selection is None or not isinstance(limit, int):
            return None
        marks: Marks_ = {}
        for name, offset in (value.get("marks") or {}).items():
            topic, _, partition = str(name).rpartition("/")
            if topic and partition.isdigit() and isinstance(offset, int):
                marks[TopicPartition(topic, int(partition))] = offset
        return cls(selection, limit, bool(value.get("done")), marks)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One redrive group: its committed offsets on the dead-letter topic and its last state."""

    group: str
    positions: dict[int, int]
    state: RunState | None

    def took(self, letter: DeadLetterValue, partition: int, offset: int, timestamp_ms: int) -> bool:
        """True when this group's runs sent the letter at ``partition``/``offset``."""
        if self.state is None or offset >= self.positions.get(partition, -1):
            return False
        if letter.redrive_count >= self.state.max_redrives:
            return False  # it stopped at its limit: a run with a higher limit may send it
        return self.state.selection.matches(letter, timestamp_ms)


def load_groups(admin: Any, dead_letter_topic: str, prefix: str) -> dict[str, GroupRecord]:
    """Every redrive group (id ``prefix`` or ``prefix.*``) with offsets on the topic."""
    try:
        listed = admin.list_groups()
        ids = [g["group_id"] for g in listed if _is_redrive_group(str(g["group_id"]), prefix)]
        offsets = admin.list_group_offsets(ids) if ids else {}
    except KafkaError as exc:
        raise StreamError(f"listing the redrive groups failed: {exc}") from exc
    found: dict[str, GroupRecord] = {}
    for group, committed in offsets.items():
        mine = {tp: meta for tp, meta in committed.items() if tp.topic == dead_letter_topic}
        if not mine:
            continue
        states = (RunState.from_metadata(meta.metadata) for meta in mine.values())
        state = next((s for s in states if s is not None), None)
        positions = {tp.partition: meta.offset for tp, meta in mine.items() if meta.offset >= 0}
        found[group] = GroupRecord(group, positions, state)
    return found


def _is_redrive_group(group: str, prefix: str) -> bool:
    return group == prefix or group.startswith(prefix + ".")


def stopped_runs_marks(groups: Iterable[GroupRecord]) -> Marks_:
    """Per destination partition, the lowest mark of the groups whose last run did not finish."""
    lowest: Marks_ = {}
    for record in groups:
        if record.state is None or record.state.done:
            continue
        for tp, offset in record.state.marks.items():
            lowest[tp] = min(offset, lowest.get(tp, offset))
    return lowest


def sent_after(
    consumer: Any, marks: Mapping[TopicPartition, int], dead_letter_topic: str
) -> set[tuple[int, int]]:
    """The dead letters (partition, offset) named by the ``f2-redrive`` headers of the records
    from ``marks`` to the end of each destination partition."""
    if not marks:
        return set()
    ends = consumer.end_offsets(list(marks))
    ranges = {tp: (offset, int(ends[tp])) for tp, offset in marks.items()}
    sent: set[tuple[int, int]] = set()
    scanned = 0
    for record in read_range(consumer, ranges):
        scanned += 1
        redrive = Marks.from_kafka(record.headers).redrive
        if redrive is not None and redrive.dead_letter.topic == dead_letter_topic:
            sent.add((redrive.dead_letter.partition, redrive.dead_letter.offset))
    logger.info(
        "a stopped run had sent %d letter(s) after its last commit (%d records read)",
        len(sent),
        scanned,
    )
    return sent
