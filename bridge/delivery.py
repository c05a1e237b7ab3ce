"""The bridge's Kafka side: records sent in the order received, each reported once Kafka took it.

Recovery. kafka-python 3.0.12 fails a record only when its delivery timeout passed (retries
are unbounded within it). After an in-flight batch expired, its idempotent producer clears
its producer id and, with the broker back, may never ask for a new one: its sends then
neither succeed nor fail, for good; and after a broker's kill -9 it delivered nothing before
the timeout although the broker was back within seconds. So the first failure, a record left
unanswered for ``stall_s`` (longer than the delivery timeout), or one unanswered for
``unanswered_s`` while the cluster answers a probe, makes the sender hold every newer record, give
up on the producer (closed forcefully: what it holds fails), make a new one (``rebuild``,
retried on its backoff until Kafka answers) and send each record Kafka did not acknowledge
again, in the order received, before any newer one. Per device (the key picks the partition)
the first copy of each record in Kafka keeps the order of receipt; a record Kafka took while
its answer was lost is sent twice (downstream drops repeats by the natural key).

A record Kafka can never take (above the producer's or the broker's size limit) becomes a
dead letter naming it without its bytes; it is no reason to recover.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from bridge.metrics import BridgeMetrics
from f2lib.backoff import Backoff
from f2lib.contracts.records import dead_letter, dump_json
from f2lib.errors import RecordTooLargeError
from f2lib.kafka import close_producer

logger = logging.getLogger(__name__)

# Errors about the record itself: sending it again can never succeed.
# (RecordTooLargeError: the confluent client's.)
RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError,
                 CorruptRecordError, RecordTooLargeError)  # fmt: skip
NOT_SENT = -1
POLL_S = 0.1


class RecordFuture(Protocol):
    """What ``KafkaProducer.send`` returns: a future taking success and failure callbacks."""

    def add_callback(self, f: Callable[..., Any], *args: Any) -> Any: ...

    def add_errback(self, f: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The part of kafka-python's ``KafkaProducer`` the bridge uses."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass(slots=True)
class PendingRecord:
    """One received message on its way to Kafka, then to its acknowledgement.

    ``seq`` is the order of receipt; ``gen`` the producer generation it was last sent on
    (``NOT_SENT`` while queued or held); ``done`` once Kafka acknowledged it.
    """

    mid: int
    qos: int
    epoch: int
    kind: str
    topic: str
    key: bytes | None
    value: bytes
    mqtt_topic: str
    received: float
    seq: int = 0
    gen: int = NOT_SENT
    sent_at: float = 0.0
    attempts: int = 0
    done: bool = False


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    """When the sender gives up on a producer, and how it waits before sending again."""

    stall_s: float
    resend_backoff: Backoff
    rebuild_backoff: Backoff
    unanswered_s: float = 10.0


class KafkaSender:
    """Sends records from one thread; ``on_delivered`` hears of each acknowledged one, once.

    ``rebuild`` makes a new producer (one attempt; it raises when Kafka does not answer).
    Without it a failure sends the records again on the same producer. ``probe`` asks the
    cluster whether it answers (raises when not).
    """

    def __init__(
        self,
        producer: Producer,
        *,
        dead_letter_topic: str,
        metrics: BridgeMetrics,
        recovery: RecoveryConfig,
        on_delivered: Callable[[PendingRecord], None],
        on_kafka: Callable[[bool], None],
        rebuild: Callable[[], Producer] | None = None,
        probe: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._probe = probe
        self._probed_at = 0.0
        self._dead_letter_topic = dead_letter_topic
        self._metrics = metrics
        self._produced: dict[str, Any] = {}
        self._recovery = recovery
        self._on_delivered = on_delivered
        self._on_kafka = on_kafka
        self._rebuild = rebuild
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[PendingRecord] = queue.SimpleQueue()
        self._outstanding: dict[int, PendingRecord] = {}  # sent, unanswered; oldest first
        self._held: dict[int, PendingRecord] = {}  # to send again, in seq order
        self._generation = 0
        self._recovering = False
        self._failures = 0  # recoveries since Kafka last acknowledged a record
        self._cause = ""
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-sender", daemon=True)

    # -- any thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: PendingRecord) -> None:
        self._queue.put(item)

    def queued(self) -> bool:
        """True while records wait to be sent for the first time."""
        return not self._queue.empty()

    def busy(self) -> bool:
        """True while any record is queued, sent and unanswered, or held to be sent again."""
        with self._lock:
            return bool(self._outstanding or self._held) or not self._queue.empty()

    def flush(self, timeout: float) -> None:
        """Ask the producer to send what it buffers and wait up to ``timeout``; never raises."""
        with self._lock:
            producer = self._producer
        try:
            producer.flush(timeout=timeout)
        except Exception as exc:  # a flush that times out must not prevent the stop
            logger.warning("producer flush did not complete: %s", exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop sending and close the producer (forcefully after ``timeout``); never raises."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        with self._lock:
            producer = self._producer
        close_producer(producer, timeout)

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                recovering = self._recovering
            if recovering:
                self._recover()
                continue
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                item = None
            if item is not None:
                self._send(item)
            self._check_stall()

    def _send(self, item: PendingRecord) -> None:
        with self._lock:
            if item.done:
                return
            if self._recovering:  # newer records wait behind those to be sent again
                self._held[item.seq] = item
                return
            generation = self._generation
            item.gen, item.sent_at = generation, self._clock()
            self._outstanding[item.seq] = item
            producer = self._producer
        try:
            future: RecordFuture = producer.send(item.topic, key=item.key, value=item.value)
        except RECORD_ERRORS as exc:  # the producer's own size check
            if self._withdraw(item, generation):
                self._send(self._as_dead_letter(item, exc))
            return
        except Exception as exc:  # metadata timeouts, a closed producer: held, sent again
            self._failed(item, generation, exc)
            return
        future.add_callback(self._delivered, item, generation)
        future.add_errback(self._failed, item, generation)

    def _check_stall(self) -> None:
        """A producer that neither delivers nor fails past ``stall_s`` is given up on; so is
        one whose oldest record waits ``unanswered_s`` while the cluster answers a probe (the
        broker is back, the producer is not)."""
        with self._lock:
            if self._recovering or not self._outstanding:
                return
            oldest = next(iter(self._outstanding.values()))
            now = self._clock()
            waited = now - oldest.sent_at
            if waited < self._recovery.stall_s:
                quick = self._probe is not None and waited >= self._recovery.unanswered_s
                if not quick or now - self._probed_at < self._recovery.unanswered_s / 2:
                    return
                self._probed_at = now
        if waited < self._recovery.stall_s:
            assert self._probe is not None
            try:
                self._probe()
            except Exception:  # the cluster does not answer either: the delivery timeout decides
                return
            cause = f"no answer for {waited:.0f}s while the cluster answers"
        else:
            cause = f"no answer from Kafka for {waited:.0f}s"
        with self._lock:
            if self._recovering or self._outstanding.get(oldest.seq) is not oldest:
                return  # answered meanwhile
            self._recovering = True
            self._cause = cause
        logger.warning("kafka: the record of %r (mid %d): %s; giving up on the producer",
                       oldest.mqtt_topic, oldest.mid, cause)  # fmt: skip
        self._on_kafka(False)

    def _recover(self) -> None:
        """Give up on the producer (make a new one), then send the held records in order."""
        with self._lock:
            self._failures += 1
            attempt = self._failures
            self._generation += 1  # answers about earlier sends no longer count as failures
            for seq, item in self._outstanding.items():
                item.gen = NOT_SENT
                self._held[seq] = item
            self._outstanding.clear()
            old, held, cause = self._producer, len(self._held), self._cause
        if self._rebuild is not None:
            logger.warning("rebuilding the kafka producer (%s); %d record(s) to send again in "
                           "the order received", cause, held)  # fmt: skip
            close_producer(old, timeout=0)
            fresh = self._recovery.rebuild_backoff.retry(
                self._rebuild, self._closed, on_retry=_report_rebuild
            )
            if fresh is None:
                return  # closing: the held records stay unacknowledged (redelivered later)
            self._metrics.producer_rebuilds.inc()
            with self._lock:
                self._producer = fresh
        if self._closed.wait(self._recovery.resend_backoff.delay(attempt)):
            return
        with self._lock:
            items = [self._held[seq] for seq in sorted(self._held)]
            self._held.clear()
            self._recovering = False
        for item in items:
            self._send(item)

    # -- answers (the producer's I/O thread, or the sender thread) -----------------------------

    def _delivered(self, item: PendingRecord, generation: int, metadata: Any) -> None:
        with self._lock:
            if item.done:
                return
            item.done = True
            if self._outstanding.get(item.seq) is item:
                del self._outstanding[item.seq]
            self._held.pop(item.seq, None)  # a late answer about a record held to resend
            if generation == self._generation:
                self._failures = 0
        produced = self._produced.get(item.kind)
        if produced is None:  # the counter's child per kind, cached (labels() is slow)
            produced = self._produced[item.kind] = self._metrics.produced.labels(kind=item.kind)
        produced.inc()
        self._on_kafka(True)
        self._on_delivered(item)

    def _failed(self, item: PendingRecord, generation: int, exc: BaseException) -> None:
        if isinstance(exc, RECORD_ERRORS) and item.kind != "dead_letter":
            if self._withdraw(item, generation):
                self.submit(self._as_dead_letter(item, exc))
            return
        with self._lock:
            if item.done or item.gen != generation or self._outstanding.get(item.seq) is not item:
                return  # an answer about an earlier send of a record sent again since
            del self._outstanding[item.seq]
            item.gen = NOT_SENT
            item.attempts += 1
            self._held[item.seq] = item
            first = not self._recovering
            self._recovering = True
            if first:
                self._cause = f"{type(exc).__name__}: {exc}"
        self._metrics.send_errors.inc()
        self._on_kafka(False)
        if first:
            logger.warning("kafka did not take the record of %r (mid %d): %s; newer records "
                           "wait until the unacknowledged are sent again", item.mqtt_topic,
                           item.mid, exc)  # fmt: skip

    def _withdraw(self, item: PendingRecord, generation: int) -> bool:
        """Take a record back from the outstanding ones (False if it is not there any more)."""
        with self._lock:
            if item.done or item.gen != generation or self._outstanding.get(item.seq) is not item:
                return False
            del self._outstanding[item.seq]
            item.gen = NOT_SENT
            return True

    def _as_dead_letter(self, item: PendingRecord, exc: BaseException) -> PendingRecord:
        """The record becomes a dead letter naming it (topic, size, qos) without its bytes."""
        reason = "record_too_large"
        self._metrics.dead_lettered.labels(reason=reason).inc()
        logger.error("message on %r cannot go to Kafka (%d bytes): %s", item.mqtt_topic,
                     len(item.value), exc)  # fmt: skip
        original = {"topic": item.mqtt_topic, "value_bytes": len(item.value), "qos": item.qos}
        letter = dead_letter(
            original,
            stage="bridge",
            reason=reason,
            error=f"{type(exc).__name__}: {exc}",
            key=item.key.decode() if item.key else None,
        )
        item.kind, item.topic, item.value = (
            "dead_letter",
            self._dead_letter_topic,
            dump_json(letter),
        )
        return item


def _report_rebuild(exc: Exception, delay: float) -> None:
    logger.warning("kafka producer not rebuilt: %s; retry in %.1fs", exc, delay)
