"""One redrive run: check, find where the selection stopped, read, decide, send, commit.

The run reads each partition of the dead-letter topic from its group's committed offset (a new
group: from SINCE, else from the beginning) to the end the topic had when the run started, so
its own new dead letters wait for the next run. Records are sent with acks=all; every
``commit_every`` sends (and at the end) it flushes, waits for every acknowledgement, then
commits the offsets after the letters decided so far, with the run's state as metadata (see
``ledger``). Killed at any point, the next run sends each remaining letter once: the letters
below the committed offsets are done, and those sent after the last commit are found by their
``f2-redrive`` headers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from f2lib.contracts.marks import Position
from f2lib.contracts.records import DeadLetterValue
from f2lib.errors import RecordError, ReplayRefusedError, StreamError
from infra.tools.redrive.decision import (
    DEFAULT_MAX_REDRIVES,
    Outcome,
    RedriveTopics,
    Resend,
    at_limit,
    resend_of,
)
from infra.tools.redrive.ledger import (
    GroupRecord,
    RunState,
    load_groups,
    sent_after,
    stopped_runs_marks,
)
from infra.tools.redrive.selection import GROUP_PREFIX, Selection, device_of
from infra.tools.redrive.summary import RedriveSummary
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.metrics import ReplayMetrics
from infra.tools.replay.positions import (
    Bounds,
    bounds,
    check_window,
    offsets_at,
    partitions_of,
    read_range,
    retention_of,
)

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RedriveOptions:
    """What to redrive and how: the selection, a dry run, the limit, the pace."""

    selection: Selection = field(default_factory=Selection)
    dry_run: bool = False
    max_redrives: int = DEFAULT_MAX_REDRIVES
    group: str | None = None  # default: the selection's own group
    commit_every: int = 200
    rate: float = 0.0  # records per second; 0: as fast as Kafka takes them

    @property
    def group_id(self) -> str:
        return self.group or self.selection.group_id()


@dataclass
class _Decided:
    outcome: Outcome
    stage: str
    reason: str
    resend: Resend | None = None
    detail: dict[str, Any] | None = None


class RedriveRun:
    """A redrive run over ``topics`` with ``kafka``; ``checks`` refuse before anything is read
    (Kafka and the databases must answer)."""

    def __init__(
        self,
        options: RedriveOptions,
        topics: RedriveTopics,
        kafka: KafkaClients,
        checks: Callable[[], None] = lambda: None,
        metrics: ReplayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.topics = topics
        self.kafka = kafka
        self._checks = checks
        self.metrics = metrics or ReplayMetrics("redrive")
        self._clock = clock
        self._sleep = sleep

    def run(self) -> RedriveSummary:
        """Redrive the selected letters; ReplayRefusedError before sending when it cannot."""
        options = self.options
        group = options.group_id
        summary = RedriveSummary(group, options.selection, options.dry_run, options.max_redrives)
        self._checks()
        groups, retention = self._ledger(group)
        own = groups.get(group)
        if own is not None and own.state is not None and own.state.selection != options.selection:
            raise ReplayRefusedError(
                f"group {group} belongs to the selection {own.state.selection.describe()}, not"
                f" {options.selection.describe()}: choose another --group"
            )
        consumer = self.kafka.consumer(None if options.dry_run else group)
        try:
            self._run(consumer, summary, groups, own, retention)
        except KafkaError as exc:
            raise StreamError(f"redrive stopped: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
        return summary

    # -- before reading ----------------------------------------------------------------------

    def _ledger(self, group: str) -> tuple[dict[str, GroupRecord], int | None]:
        admin = self.kafka.admin()
        try:
            groups = load_groups(admin, self.topics.dead_letter, GROUP_PREFIX)
            if group not in groups:
                groups.update(load_groups(admin, self.topics.dead_letter, group))
            return groups, retention_of(admin, self.topics.dead_letter)
        finally:
            admin.close()

    def _starts(
        self, found: Mapping[TopicPartition, Bounds], own: GroupRecord | None, consumer: Any
    ) -> tuple[dict[TopicPartition, int], int]:
        """Where each partition is read from, and how many letters aged out unread."""
        since = self.options.selection.since_ms
        tps = list(found)
        ends = {tp: b.end for tp, b in found.items()}
        from_since = offsets_at(consumer, tps, since, ends) if since is not None else ends
        starts: dict[TopicPartition, int] = {}
        lost = 0
        for tp, bound in found.items():
            committed = own.positions.get(tp.partition) if own is not None else None
            if committed is not None:
                lost += max(0, bound.beginning - committed)
                starts[tp] = min(max(committed, bound.beginning), bound.end)
            elif since is not None:
                starts[tp] = from_since[tp]
            else:
                starts[tp] = bound.beginning
        return starts, lost

    # -- the run -----------------------------------------------------------------------------

    def _run(
        self,
        consumer: Any,
        summary: RedriveSummary,
        groups: dict[str, GroupRecord],
        own: GroupRecord | None,
        retention: int | None,
    ) -> None:
        options, topics = self.options, self.topics
        tps = partitions_of(consumer, topics.dead_letter)
        found = bounds(consumer, tps)
        since = options.selection.since_ms
        if since is not None:
            now_ms = int(self._clock() * 1000)
            check_window(topics.dead_letter, found, since, retention, now_ms)
        starts, summary.lost = self._starts(found, own, consumer)
        ranges = {tp: (starts[tp], found[tp].end) for tp in tps}
        others = [record for name, record in groups.items() if name != summary.group]
        # what this selection's last run sent after its last commit, when it was stopped
        already = self._sent_by_stopped_runs([own] if own is not None else [])
        destinations = [tp for topic in topics.inputs for tp in partitions_of(consumer, topic)]
        previous = own.state.marks if own is not None and own.state and not own.state.done else {}
        ends = consumer.end_offsets(destinations)
        marks = {tp: min(previous.get(tp, end), end) for tp, end in ends.items()}
        to_read = sum(stop - start for start, stop in ranges.values())
        logger.info(
            "redrive %s as group %s: %d letter(s) to read in %s",
            options.selection.describe(),
            summary.group,
            to_read,
            topics.dead_letter,
        )
        sender = _Sender(
            options,
            self.kafka,
            consumer,
            summary,
            starts,
            marks,
            previous,
            self._clock,
            self._sleep,
        )
        if not options.dry_run:
            sender.commit(done=False)  # from here on a stopped run leaves its marks
        for record in read_range(consumer, ranges):
            decided = self._decide(record, others, already)
            summary.add(decided.stage, decided.reason, decided.outcome, decided.detail)
            self.metrics.record(decided.stage, decided.reason, decided.outcome.value)
            sender.decided(record, decided)
        sender.finish()

    def _sent_by_stopped_runs(self, groups: Iterable[GroupRecord]) -> set[tuple[int, int]]:
        marks = stopped_runs_marks(groups)
        if not marks:
            return set()
        scanner = self.kafka.consumer(None)
        try:
            return sent_after(scanner, marks, self.topics.dead_letter)
        finally:
            scanner.close()

    def _decide(
        self, record: Any, others: list[GroupRecord], already: set[tuple[int, int]]
    ) -> _Decided:
        options = self.options
        try:
            letter = DeadLetterValue.parse(record.value)
        except RecordError:
            return _Decided(Outcome.UNREADABLE, "-", "-")
        if not options.selection.matches(letter, record.timestamp):
            return _Decided(Outcome.NOT_SELECTED, letter.stage, letter.reason)
        position = Position(record.topic, record.partition, record.offset)
        detail = {
            "dead_letter": str(position),
            "device": device_of(letter),
            "stage": letter.stage,
            "reason": letter.reason,
            "count": letter.redrive_count,
        }
        if (record.partition, record.offset) in already:
            return _Decided(Outcome.ALREADY_SENT, letter.stage, letter.reason)
        if any(g.took(letter, record.partition, record.offset, record.timestamp) for g in others):
            return _Decided(Outcome.ALREADY_REDRIVEN, letter.stage, letter.reason)
        if at_limit(letter, options.max_redrives):
            return _Decided(Outcome.AT_LIMIT, letter.stage, letter.reason, detail=detail)
        resend = resend_of(letter, position, self.topics)
        if resend is None:
            return _Decided(Outcome.NO_TARGET, letter.stage, letter.reason, detail=detail)
        outcome = Outcome.WOULD_SEND if options.dry_run else Outcome.SENT
        return _Decided(outcome, letter.stage, letter.reason, resend)


class _Sender:
    """Sends the decided records, and commits the offsets after their acknowledgements."""

    def __init__(
        self,
        options: RedriveOptions,
        kafka: KafkaClients,
        consumer: Any,
        summary: RedriveSummary,
        starts: dict[TopicPartition, int],
        marks: dict[TopicPartition, int],
        previous_marks: Mapping[TopicPartition, int],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._options = options
        self._kafka = kafka
        self._clock = clock
        self._sleep = sleep
        self._consumer = consumer
        self._summary = summary
        self._positions = dict(starts)
        self._marks = marks
        self._previous = previous_marks
        self._producer: Any = None
        self._pending: list[tuple[str, Any]] = []
        self._started = clock()
        self._sent = 0

    def decided(self, record: Any, decided: _Decided) -> None:
        tp = TopicPartition(record.topic, record.partition)
        if decided.outcome is Outcome.SENT and decided.resend is not None:
            self._send(decided.resend)
        self._positions[tp] = record.offset + 1
        if len(self._pending) >= self._options.commit_every:
            self.commit(done=False)

    def finish(self) -> None:
        if not self._options.dry_run:
            self.commit(done=True)
        if self._producer is not None:
            self._producer.close(timeout=SEND_TIMEOUT_S)

    def _send(self, resend: Resend) -> None:
        if self._producer is None:
            self._producer = self._kafka.producer()
        future = self._producer.send(
            resend.topic,
            key=resend.key.encode("utf-8") if resend.key is not None else None,
            value=resend.value,
            headers=resend.headers,
        )
        self._pending.append((resend.topic, future))
        self._sent += 1
        rate = self._options.rate
        if rate > 0:
            wait = self._started + self._sent / rate - self._clock()
            if wait > 0:
                self._sleep(wait)

    def _acknowledged(self) -> None:
        """Flush and wait for every record sent since the last commit."""
        if not self._pending:
            return
        self._producer.flush(timeout=SEND_TIMEOUT_S)
        for topic, future in self._pending:
            metadata = future.get(timeout=SEND_TIMEOUT_S)
            tp = TopicPartition(metadata.topic, metadata.partition)
            next_offset = int(metadata.offset) + 1
            self._marks[tp] = min(
                self._previous.get(tp, next_offset), max(self._marks.get(tp, 0), next_offset)
            )
            self._summary.sent_to[topic] += 1
        self._pending.clear()

    def commit(self, done: bool) -> None:
        """Commit the offsets after the letters decided so far, once their records are acked."""
        self._acknowledged()
        state = RunState(self._options.selection, self._options.max_redrives, done, self._marks)
        metadata = state.to_metadata()
        offsets = {tp: OffsetAndMetadata(o, metadata, -1) for tp, o in self._positions.items()}
        self._consumer.commit(offsets)
        where = ", ".join(f"{tp.partition}@{o}" for tp, o in sorted(self._positions.items()))
        logger.info(
            "committed %s: read %d, sent %d%s",
            where,
            self._summary.read,
            self._summary.sent,
            " (done)" if done else "",
        )
