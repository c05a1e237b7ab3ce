"""One reprocess run: a device's raw records of a window decoded again, its rows overwritten.

Why through Kafka: the run copies the device's original records (found by timestamp,
``offsets_for_times``) back to the raw topic, with their key and an ``f2-reprocess`` header,
instead of calling decode itself. The copies take the deployed path, whatever runs it (the
local gateway, OpenFaaS, plain Kubernetes): the connector feeds them to decode in the
partition of their key, so a device's records stay in order, behind or between its live ones;
decode reads the device's parameters afresh and marks what it produces; the sink overwrites
the rows with the same natural key for those records only. Copies of an earlier reprocess are
skipped when the window is read, so a second run reads the same originals.

It then follows its records: decode's consumer group past the copies means decode produced
everything they became; the run reads its measurements and dead letters (by its run id) and
waits for the sink's group to pass them. Rows are compared with what was stored before:
updated, unchanged, inserted. A run that is not confirmed in time says so (exit 3); running
it again is harmless, the upsert converges.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from f2lib.contracts.marks import Marks, Position, Reprocess, without_marks
from f2lib.contracts.records import DeadLetterValue
from f2lib.errors import RecordError, ReplayIncompleteError, StreamError
from f2lib.models import Measurement
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.metrics import ReplayMetrics
from infra.tools.replay.positions import (
    bounds,
    check_window,
    key_partition,
    offsets_at,
    partitions_of,
    read_range,
    retention_of,
)
from infra.tools.replay.window import TimeWindow
from infra.tools.reprocess.rows import RowChanges, RowReader, compare, device_times, keys_of

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class ReprocessTopics:
    raw: str
    decoded: str
    dead_letter: str


@dataclass(frozen=True, slots=True)
class PipelineGroups:
    """The connector's consumer groups feeding decode (raw) and sink (decoded)."""

    decode: str
    sink: str


@dataclass(frozen=True, slots=True)
class ReprocessOptions:
    device: str
    window: TimeWindow
    dry_run: bool = False
    wait_timeout_s: float = 300.0
    all_partitions: bool = False  # a topic grown since: the device's older records elsewhere
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class ReprocessSummary:
    """What a run read, sent, got decoded and did to the rows."""

    device: str
    run: str
    window: TimeWindow
    dry_run: bool
    read: int = 0
    copies_skipped: int = 0
    sent: int = 0
    decoded: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    rows: RowChanges | None = None
    confirmed: bool = False

    def to_json(self) -> dict[str, Any]:
        rows = self.rows or RowChanges()
        return {
            "device": self.device,
            "run": self.run,
            "window": self.window.describe(),
            "dry_run": self.dry_run,
            "read": self.read,
            "copies_skipped": self.copies_skipped,
            "sent": self.sent,
            "decoded": self.decoded,
            "dead_lettered": dict(self.dead_lettered),
            "updated": rows.updated,
            "unchanged": rows.unchanged,
            "inserted": rows.inserted,
            "missing": rows.missing,
            "confirmed": self.confirmed,
        }

    def render(self) -> str:
        mode = " (dry run: nothing sent)" if self.dry_run else ""
        skipped = self.copies_skipped
        lines = [
            f"reprocess {self.run} of {self.device}, {self.window.describe()}{mode}",
            f"read {self.read} raw record(s)"
            + (f" ({skipped} copies of earlier reprocesses skipped)" if skipped else ""),
        ]
        if self.dry_run or not self.read:
            return "\n".join(lines)
        lines.append(f"sent {self.sent} back through decode")
        failed = sum(self.dead_lettered.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.dead_lettered.items()))
        lines.append(
            f"re-decoded {self.decoded} measurement(s)"
            + (f", {failed} record(s) dead-lettered ({reasons})" if failed else "")
        )
        if self.rows is not None:
            rows = self.rows
            lines.append(
                f"rows updated {rows.updated}, unchanged {rows.unchanged}, inserted {rows.inserted}"
            )
            if rows.missing:
                lines.append(f"WARNING: {rows.missing} measurement(s) have no row")
        if not self.confirmed:
            lines.append("NOT CONFIRMED: the pipeline did not take every record in time")
        return "\n".join(lines)


class ReprocessRun:
    """A reprocess of one device's window; ``checks`` refuse before anything is read."""

    def __init__(
        self,
        options: ReprocessOptions,
        topics: ReprocessTopics,
        groups: PipelineGroups,
        kafka: KafkaClients,
        rows: RowReader,
        checks: Callable[[], None] = lambda: None,
        metrics: ReplayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.topics = topics
        self.groups = groups
        self.kafka = kafka
        self.rows = rows
        self._checks = checks
        self.metrics = metrics or ReplayMetrics("reprocess")
        self._clock = clock
        self._sleep = sleep

    def run(self) -> ReprocessSummary:
        options = self.options
        summary = ReprocessSummary(options.device, options.run_id, options.window, options.dry_run)
        self._checks()
        admin = self.kafka.admin()
        consumer = self.kafka.consumer(None)
        try:
            self._run(admin, consumer, summary)
        except KafkaError as exc:
            raise StreamError(f"reprocess stopped: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
            with contextlib.suppress(Exception):
                admin.close()
        return summary

    def _run(self, admin: Any, consumer: Any, summary: ReprocessSummary) -> None:
        options, topics = self.options, self.topics
        originals = self._read_window(admin, consumer, summary)
        if options.dry_run or not originals:
            summary.confirmed = True
            return
        span = device_times(r.value for r in originals)
        before = self.rows.between(options.device, *span) if span else {}
        decoded_tps = partitions_of(consumer, topics.decoded)
        dead_tps = partitions_of(consumer, topics.dead_letter)
        decoded_from = consumer.end_offsets(decoded_tps)
        dead_from = consumer.end_offsets(dead_tps)
        produced = self._send(originals)
        summary.sent = len(originals)
        self.metrics.record("raw", "", "sent", summary.sent)
        deadline = self._clock() + options.wait_timeout_s
        self._wait(admin, self.groups.decode, produced, deadline, summary, "decode")
        measurements, wanted = self._ours_decoded(consumer, decoded_from)
        summary.decoded = len(measurements)
        summary.dead_lettered = self._ours_dead(consumer, dead_from)
        self._wait(admin, self.groups.sink, wanted, deadline, summary, "sink")
        keys = keys_of(measurements)
        summary.rows = compare(before, self.rows.by_key(keys), keys)
        summary.confirmed = True
        for outcome in ("updated", "unchanged", "inserted", "missing"):
            self.metrics.row(outcome, getattr(summary.rows, outcome))
        self.metrics.row("decoded", summary.decoded)
        self.metrics.row("dead_lettered", sum(summary.dead_lettered.values()))

    # -- reading the window ----------------------------------------------------------------

    def _read_window(self, admin: Any, consumer: Any, summary: ReprocessSummary) -> list[Any]:
        options, topics = self.options, self.topics
        window = options.window
        assert window.since_ms is not None, "a reprocess needs SINCE"
        tps = partitions_of(consumer, topics.raw)
        if not options.all_partitions:
            tps = [tps[key_partition(options.device, len(tps))]]
        found = bounds(consumer, tps)
        now_ms = int(self._clock() * 1000)
        check_window(topics.raw, found, window.since_ms, retention_of(admin, topics.raw), now_ms)
        ends = {tp: b.end for tp, b in found.items()}
        starts = offsets_at(consumer, tps, window.since_ms, ends)
        until = window.until_ms
        stops = ends if until is None else offsets_at(consumer, tps, until + 1, ends)
        ranges = {tp: (starts[tp], max(starts[tp], stops[tp])) for tp in tps}
        key = options.device.encode("utf-8")
        originals = []
        for record in read_range(consumer, ranges):
            if record.key != key or not window.contains(record.timestamp):
                continue
            if Marks.from_kafka(record.headers).reprocess is not None:
                summary.copies_skipped += 1
                continue
            originals.append(record)
        summary.read = len(originals)
        self.metrics.record("raw", "", "read", summary.read)
        logger.info(
            "reprocess %s: %d raw record(s) of %s in %s",
            options.run_id,
            summary.read,
            options.device,
            window.describe(),
        )
        return originals

    # -- sending ---------------------------------------------------------------------------

    def _send(self, originals: list[Any]) -> dict[TopicPartition, int]:
        """Copy the records to the raw topic, marked; returns the offset after each partition's
        last copy, once every copy was acknowledged."""
        producer = self.kafka.producer()
        try:
            futures = []
            for record in originals:
                source = Position(record.topic, record.partition, record.offset)
                previous = Marks.from_kafka(record.headers)
                marks = Marks(previous.redrive, Reprocess(self.options.run_id, source))
                headers = without_marks(list(record.headers or [])) + marks.kafka_headers()
                future = producer.send(
                    self.topics.raw, key=record.key, value=record.value, headers=headers
                )
                futures.append(future)
            producer.flush(timeout=SEND_TIMEOUT_S)
            after: dict[TopicPartition, int] = {}
            for future in futures:
                meta = future.get(timeout=SEND_TIMEOUT_S)
                tp = TopicPartition(meta.topic, meta.partition)
                after[tp] = max(after.get(tp, 0), int(meta.offset) + 1)
        finally:
            producer.close(timeout=SEND_TIMEOUT_S)
        return after

    # -- following the records ---------------------------------------------------------------

    def _wait(
        self,
        admin: Any,
        group: str,
        wanted: Mapping[TopicPartition, int],
        deadline: float,
        summary: ReprocessSummary,
        stage: str,
    ) -> None:
        """Until ``group`` committed at least ``wanted`` on each partition."""
        while True:
            try:
                committed = admin.list_group_offsets({group: list(wanted)}).get(group, {})
            except KafkaError as exc:
                logger.debug("offsets of %s not read: %s", group, exc)
                committed = {}
            behind = [
                tp
                for tp, offset in wanted.items()
                if (meta := committed.get(tp)) is None or meta.offset < offset
            ]
            if not behind:
                return
            if self._clock() >= deadline:
                where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in behind)
                raise ReplayIncompleteError(
                    f"{stage} (consumer group {group}) did not take the reprocessed records"
                    f" within {self.options.wait_timeout_s:.0f}s (still behind on {where});"
                    " is the connector running? Running the reprocess again is harmless",
                    summary=summary,
                )
            self._sleep(POLL_S)

    def _tail(self, consumer: Any, since: Mapping[TopicPartition, int]) -> list[Any]:
        ends = consumer.end_offsets(list(since))
        ranges = {tp: (int(since[tp]), int(ends[tp])) for tp in since}
        return list(read_range(consumer, ranges))

    def _ours_decoded(
        self, consumer: Any, since: Mapping[TopicPartition, int]
    ) -> tuple[list[Measurement], dict[TopicPartition, int]]:
        run = self.options.run_id
        found: list[Measurement] = []
        wanted: dict[TopicPartition, int] = {}
        for record in self._tail(consumer, since):
            mark = Marks.from_kafka(record.headers).reprocess
            if mark is None or mark.run != run:
                continue
            found.append(Measurement.model_validate_json(record.value))
            tp = TopicPartition(record.topic, record.partition)
            wanted[tp] = max(wanted.get(tp, 0), record.offset + 1)
        return found, wanted

    def _ours_dead(self, consumer: Any, since: Mapping[TopicPartition, int]) -> Counter[str]:
        run = self.options.run_id
        reasons: Counter[str] = Counter()
        for record in self._tail(consumer, since):
            try:
                letter = DeadLetterValue.parse(record.value)
            except RecordError:
                continue
            mark = Reprocess.from_json(letter.reprocess)
            if mark is not None and mark.run == run:
                reasons[letter.reason] += 1
        return reasons
