"""One function's consumer: its partitions batched, delivered concurrently, then committed.

Threads. A consumer thread owns the kafka-python consumer (not thread-safe): it polls, fills a
buffer per partition, cuts batches, commits, pauses full partitions and exports lag. Delivery
threads (a pool) each deliver one batch; a partition has at most one batch in flight, so
per-key order (the key picks the partition) holds while partitions proceed concurrently. How
many partitions are fed at once follows the function's replica count. Rebalance listeners run
on kafka-python's IO thread while the consumer thread waits in ``poll()``/``close()`` (see
``_Rebalance``), so the two never touch the partition states at the same time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError

from f2lib.contracts.functions import consumer_group
from f2lib.contracts.invocation import body_size, encode_record
from f2lib.errors import DeliveryAbandoned
from f2lib.kafka.confluent import ConfluentConsumer, FatalConsumerError, consumer_config
from infra.services.connector.batching import Batch, BatchLimits, PartitionBuffer
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import BatchDelivery, DeliveryReport
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.targets import FunctionTarget

logger = logging.getLogger(__name__)

ConsumerFactory = Callable[[str, str], Any]
BUSY_POLL_MS = 10
IDLE_POLL_MS = 100
STALL_LIMIT_S = 300.0
# Flow control pauses a partition whose buffer is full, but never trusts kafka-python 3.0.12 to
# hand back after resume() what it fetched for the partition meanwhile: it parks such records
# (and restores parsed ones only when its in-line slot is None, which it never is again), and
# under bursts with pause/resume a partition stopped being fetched for good. So resume() comes
# with a seek() to the offset after the last record the connector holds, records below it are
# dropped as repeats, and a partition that stays silent with lag left is sought again.
# Every poll drains what the fetcher holds; memory is bounded by the fetch sizes below.
DRAIN_ALL_RECORDS = 1_000_000
REFETCH_AFTER_S = 10.0
FETCH_MAX_BYTES = 16 * 1024 * 1024


def kafka_consumer_factory(config: ConnectorConfig) -> ConsumerFactory:
    """Makes consumers of ``config.kafka_client`` for a group: manual commits, earliest offset
    when new, fetches of ``fetch_min_bytes`` or ``fetch_max_wait_ms``, the configured session
    timeout, and a static instance id when one is configured."""
    partition_bytes = max(1024 * 1024, config.batch_max_bytes)
    fetch_bytes = max(FETCH_MAX_BYTES, config.batch_max_bytes)
    poll_interval_ms = max(300_000, int((config.invoke_timeout_s * 2 + 60) * 1000))
    membership: dict[str, Any] = {
        "session_timeout_ms": config.session_timeout_ms,
        "heartbeat_interval_ms": config.session_timeout_ms // 3,
    }
    if config.instance_id:
        membership["group_instance_id"] = config.instance_id

    def make(group_id: str, client_id: str) -> Any:
        if config.kafka_client == "confluent":
            return ConfluentConsumer(
                consumer_config(
                    bootstrap=config.kafka_bootstrap,
                    group_id=group_id,
                    client_id=client_id,
                    fetch_min_bytes=config.fetch_min_bytes,
                    fetch_max_wait_ms=config.fetch_max_wait_ms,
                    max_partition_fetch_bytes=partition_bytes,
                    fetch_max_bytes=fetch_bytes,
                    max_poll_interval_ms=poll_interval_ms,
                    session_timeout_ms=config.session_timeout_ms,
                    group_instance_id=config.instance_id or None,
                )
            )
        return KafkaConsumer(
            bootstrap_servers=config.kafka_bootstrap.split(","),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=DRAIN_ALL_RECORDS,
            max_partition_fetch_bytes=partition_bytes,
            fetch_max_bytes=fetch_bytes,
            fetch_min_bytes=config.fetch_min_bytes,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_poll_interval_ms=poll_interval_ms,
            **membership,
        )

    return make


@dataclass(slots=True)
class InFlight:
    """A batch being delivered, and the switch that makes its delivery give up."""

    batch: Batch
    started: float
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class PartitionState:
    """What the consumer thread knows about one assigned partition."""

    tp: TopicPartition
    buffer: PartitionBuffer
    in_flight: InFlight | None = None
    delivered_to: int | None = None
    committed: int | None = None
    paused: bool = False
    next_offset: int | None = None  # after the last record buffered, in flight or delivered
    heard_at: float = 0.0  # when records last came, or the partition was last sought


@dataclass(frozen=True, slots=True)
class Completion:
    tp: TopicPartition
    flight: InFlight
    report: DeliveryReport | None
    error: BaseException | None


class _Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python 3.0.12 runs rebalance listeners on its IO thread while the consumer thread
    waits inside ``poll()`` (or ``close()``): a blocking consumer call there (``commit``) raises,
    and a listener that blocks stops the heartbeats. So the listener is async: it waits for the
    revoked partitions' batches by awaiting the client's own loop, and commits with
    ``commit_async`` awaited, before the client goes on to rejoin the group."""

    def __init__(self, owner: FunctionConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._owner.partitions_assigned(set(assigned))


def loop_sleep(consumer: Any, seconds: float) -> Awaitable[Any]:
    """An awaitable pause on the consumer's IO loop (heartbeats go on meanwhile).

    kafka-python 3.0.12's loop offers ``sleep`` on its network selector (``_client._net``);
    a consumer without one (a test double) gets a plain sleep.
    """
    net = getattr(getattr(consumer, "_client", None), "_net", None)
    sleep = getattr(net, "sleep", None)
    if callable(sleep):
        return sleep(seconds)  # type: ignore[no-any-return]
    return _thread_sleep(seconds)


async def _thread_sleep(seconds: float) -> None:
    time.sleep(seconds)


class FunctionConsumer:
    """Feeds one function from its topics in consumer group ``<prefix><function>``."""

    def __init__(
        self,
        target: FunctionTarget,
        config: ConnectorConfig,
        delivery: BatchDelivery,
        metrics: ConnectorMetrics,
        consumer_factory: ConsumerFactory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = target.name
        self.topics = target.topics
        self.group_id = f"{config.group_prefix}{target.name}"
        self._config = config
        self._replicas = target.replicas
        self._delivery = delivery
        self._metrics = metrics
        self._factory = consumer_factory
        self._clock = clock
        self._limits = BatchLimits(
            max_records=config.batch_max_records,
            max_bytes=config.batch_max_bytes,
            linger_s=config.linger_s,
        )
        self._states: dict[TopicPartition, PartitionState] = {}
        self._completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(
            max_workers=config.max_concurrency, thread_name_prefix=f"deliver-{target.name}"
        )
        self._in_flight = 0
        self._rotation = 0
        self._next_lag = 0.0
        self._next_commit_at = 0.0
        self._consumer: Any = None
        self.rebuilds = 0  # consumers made again after one became unusable
        self._stop = threading.Event()
        self._last_loop = clock()
        # True while the consumer thread waits inside poll() or close(): the only moments
        # kafka-python 3.0.12 runs the rebalance listeners (which touch the partition states).
        self._in_client_wait = False
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.name}", daemon=True)

    # -- lifecycle (any thread) ---------------------------------------------------------------

    def start(self) -> FunctionConsumer:
        self._metrics.concurrency.labels(function=self.name).set(self.concurrency)
        self._thread.start()
        logger.info("feeding %s from %s as group %s", self.name, ",".join(self.topics),
                    self.group_id)  # fmt: skip
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish in-flight batches (then cancel them), commit, leave the group."""
        self._stop.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def update(self, target: FunctionTarget) -> None:
        if target.replicas != self._replicas:
            logger.info("%s now has %d replica(s)", self.name, target.replicas)
        self._replicas = target.replicas
        self._metrics.concurrency.labels(function=self.name).set(self.concurrency)

    @property
    def concurrency(self) -> int:
        per_replica = self._config.concurrency_per_replica
        return max(1, min(max(1, self._replicas) * per_replica, self._config.max_concurrency))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def healthy(self) -> bool:
        return self.alive() and self._clock() - self._last_loop < STALL_LIMIT_S

    # -- consumer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = self._connect()
            if consumer is None:
                return
            self._consumer = consumer
            if not self._consume(consumer):
                return
            self._states.clear()  # the new consumer's assignment starts from the commits
            self.rebuilds += 1

    def _consume(self, consumer: Any) -> bool:
        """Run ``consumer`` until stopped (False) or until it is unusable for good (True: the
        caller makes a new one)."""
        unusable = False
        try:
            consumer.subscribe(list(self.topics), listener=_Rebalance(self))
            while not self._stop.is_set():
                self._last_loop = self._clock()
                try:
                    self._step(consumer)
                except FatalConsumerError as exc:
                    logger.error("%s: the consumer is unusable (%s); making a new one",
                                 self.name, exc)  # fmt: skip
                    unusable = True
                    break
                except KafkaError as exc:
                    logger.warning("%s: kafka error in the consumer loop: %s", self.name, exc)
                    self._stop.wait(1.0)
            self._finish(consumer, set(self._states))
        except Exception:
            logger.exception("%s: consumer thread failed", self.name)
            raise
        finally:
            with contextlib.suppress(Exception), self._client_wait():
                consumer.close(autocommit=False)
            logger.info("%s: consumer closed", self.name)
        return unusable

    def _connect(self) -> Any:
        def report(exc: Exception, delay: float) -> None:
            logger.warning("%s: kafka not reachable (%s); retry in %.0fs", self.name, exc, delay)

        return self._config.connect_backoff().retry(
            lambda: self._factory(self.group_id, consumer_group(self.name)),
            self._stop,
            errors=(KafkaError,),
            on_retry=report,
        )

    def _step(self, consumer: Any) -> None:
        self._take_completions(consumer, timeout=0.0)
        self._commit_delivered(consumer)
        with self._client_wait():
            fetched = consumer.poll(timeout_ms=self._poll_timeout_ms(), max_records=None)
        self._buffer(fetched)
        self._dispatch()
        self._flow_control(consumer)
        if self._clock() >= self._next_lag:
            self._next_lag = self._clock() + self._config.lag_interval_s
            self._export_lag(consumer)

    def _poll_timeout_ms(self) -> int:
        if self._in_flight:
            return BUSY_POLL_MS
        waits = [d for s in self._states.values() if (d := s.buffer.due_in()) is not None]
        if not waits:
            return IDLE_POLL_MS
        return max(1, min(IDLE_POLL_MS, int(min(waits) * 1000)))

    def _buffer(self, fetched: Mapping[TopicPartition, list[Any]]) -> None:
        for tp, records in fetched.items():
            state = self._states.get(tp)
            if state is None or not records:
                continue
            state.heard_at = self._clock()
            for record in records:
                if state.next_offset is not None and record.offset < state.next_offset:
                    continue  # fetched again after a seek: the connector holds it already
                state.buffer.add(encode_record(record))
                state.next_offset = record.offset + 1

    def _dispatch(self) -> None:
        states = list(self._states.values())
        if not states:
            return
        self._rotation = (self._rotation + 1) % len(states)
        for state in states[self._rotation :] + states[: self._rotation]:
            if self._in_flight >= self.concurrency:
                return
            if state.in_flight is None and state.buffer.ready():
                batch = state.buffer.take()
                if batch is not None:
                    self._submit(state, batch)

    def _submit(self, state: PartitionState, batch: Batch) -> None:
        flight = InFlight(batch=batch, started=self._clock())
        state.in_flight = flight
        self._in_flight += 1
        self._metrics.in_flight.labels(function=self.name).set(self._in_flight)
        self._metrics.batch_size.labels(function=self.name).observe(batch.count)
        self._metrics.batch_bytes.labels(function=self.name).observe(body_size(batch.elements))
        self._pool.submit(self._deliver, state.tp, flight)

    def _deliver(self, tp: TopicPartition, flight: InFlight) -> None:
        """Runs in a delivery thread; the consumer thread learns the outcome from the queue."""
        try:
            report = self._delivery.deliver(flight.batch, flight.cancel)
        except BaseException as exc:  # every outcome must reach the consumer thread
            self._completions.put(Completion(tp, flight, None, exc))
        else:
            self._completions.put(Completion(tp, flight, report, None))

    def _take_completions(self, consumer: Any, timeout: float, commit: bool = True) -> None:
        block = timeout > 0
        while True:
            try:
                done = self._completions.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return
            block = False
            self._complete(consumer, done, commit)

    def _complete(self, consumer: Any, done: Completion, commit: bool = True) -> None:
        self._in_flight -= 1
        self._metrics.in_flight.labels(function=self.name).set(self._in_flight)
        state = self._states.get(done.tp)
        if state is None or state.in_flight is not done.flight:
            return
        state.in_flight = None
        batch = done.flight.batch
        topic = batch.topic
        if done.report is not None:
            state.delivered_to = batch.last_offset + 1
            self._metrics.batches.labels(function=self.name, topic=topic, outcome="committed").inc()
            self._metrics.records.labels(function=self.name, topic=topic).inc(done.report.delivered)
            self._metrics.batch_duration.labels(function=self.name).observe(
                self._clock() - done.flight.started
            )
            if commit and self._config.commit_interval_ms == 0:
                self._commit_delivered(consumer, force=True)
            return
        self._metrics.batches.labels(function=self.name, topic=topic, outcome="abandoned").inc()
        if not isinstance(done.error, DeliveryAbandoned):
            logger.error("%s: delivery of %s[%d] offset %d failed unexpectedly", self.name,
                         topic, batch.partition, batch.first_offset,
                         exc_info=done.error)  # fmt: skip
        if not self._stop.is_set():
            # Consume the batch again: nothing after it may be committed before it.
            consumer.seek(done.tp, batch.first_offset)
            state.buffer.clear()
            state.next_offset = batch.first_offset

    def _uncommitted(
        self, only: set[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        return {
            tp: OffsetAndMetadata(s.delivered_to, "", -1)
            for tp, s in self._states.items()
            if s.delivered_to is not None
            and s.delivered_to != s.committed
            and (only is None or tp in only)
        }

    def _commit_delivered(
        self, consumer: Any, force: bool = False, only: set[TopicPartition] | None = None
    ) -> None:
        offsets = self._uncommitted(only)
        if not offsets or (not force and self._clock() < self._next_commit_at):
            return
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            self._next_commit_at = self._clock() + 1.0
            self._commit_failed(offsets, exc, "retried")
            return
        self._next_commit_at = self._clock() + self._config.commit_interval_ms / 1000
        self._committed(offsets)

    def _committed(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        self._metrics.commits.labels(function=self.name, result="ok").inc()
        for tp, meta in offsets.items():
            self._states[tp].committed = meta.offset

    def _commit_failed(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], exc: Exception, then: str
    ) -> None:
        self._metrics.commits.labels(function=self.name, result="failed").inc()
        logger.warning("%s: commit of %s failed (%s); %s", self.name, _describe(offsets), exc,
                       then)  # fmt: skip

    def _flow_control(self, consumer: Any) -> None:
        limits = self._limits
        for tp, state in self._states.items():
            size, held = len(state.buffer), state.buffer.pending_bytes
            full = size >= 2 * limits.max_records or held >= 2 * limits.max_bytes
            if full and not state.paused:
                consumer.pause(tp)
                state.paused = True
            elif state.paused and size < limits.max_records and held < limits.max_bytes:
                if state.next_offset is not None:
                    consumer.seek(tp, state.next_offset)  # refetch whatever the client parked
                consumer.resume(tp)
                state.paused = False
                state.heard_at = self._clock()

    def _export_lag(self, consumer: Any) -> None:
        tps = list(self._states)
        if not tps:
            return
        try:
            ends = consumer.end_offsets(tps)
            for tp in tps:
                state = self._states[tp]
                if state.committed is None:
                    state.committed = consumer.committed(tp)
                if state.committed is None:
                    state.committed = consumer.beginning_offsets([tp])[tp]
                lag = max(0, int(ends[tp]) - int(state.committed))
                self._metrics.lag.labels(
                    function=self.name, topic=tp.topic, partition=str(tp.partition)
                ).set(lag)
                self._refetch_if_silent(consumer, state, int(ends[tp]))
        except KafkaError as exc:
            logger.debug("%s: lag not measured: %s", self.name, exc)

    def _refetch_if_silent(self, consumer: Any, state: PartitionState, end: int) -> None:
        """Seek a partition that has records to fetch but got none for a while, idle and resumed."""
        expected = state.next_offset if state.next_offset is not None else state.committed
        if (
            expected is None
            or end <= expected
            or state.paused
            or state.in_flight is not None
            or len(state.buffer)
            or self._clock() - state.heard_at < REFETCH_AFTER_S
        ):
            return
        silent = self._clock() - state.heard_at
        logger.warning("%s: %s[%d] silent for %.0fs with %d to fetch; fetching from %d again",
                       self.name, state.tp.topic, state.tp.partition, silent, end - expected,
                       expected)  # fmt: skip
        consumer.seek(state.tp, expected)
        state.heard_at = self._clock()

    # -- rebalance (kafka-python's IO thread, while the consumer thread waits in poll/close) ------

    @contextlib.contextmanager
    def _client_wait(self) -> Iterator[None]:
        self._in_client_wait = True
        try:
            yield
        finally:
            self._in_client_wait = False

    def _check_listener_moment(self, what: str) -> None:
        """The listeners share the partition states with the consumer thread without a lock,
        relying on kafka-python calling them only while that thread waits in poll()/close()."""
        if not self._in_client_wait:
            logger.error("%s: %s ran while the consumer thread was not waiting in poll() or "
                         "close(); the partition states may be changed concurrently", self.name,
                         what)  # fmt: skip
            self._metrics.listener_races.labels(function=self.name).inc()

    def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._check_listener_moment("on_partitions_assigned")
        for tp in assigned:
            fresh = PartitionState(tp, PartitionBuffer(self._limits), heard_at=self._clock())
            self._states.setdefault(tp, fresh)
        self._metrics.assigned.labels(function=self.name).set(len(self._states))
        self._next_lag = 0.0
        logger.info("%s: assigned %s", self.name, _describe(assigned))

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish the revoked partitions' batches, commit them, then forget the partitions.

        Nothing here may block the IO loop: the batches are awaited with ``loop_sleep`` and
        the commit with ``commit_async``; a commit that fails leaves the batches to be
        delivered again by the partitions' next owner (at least once; the sink drops repeats).
        """
        self._check_listener_moment("on_partitions_revoked")
        logger.info("%s: revoking %s; finishing their batches", self.name, _describe(revoked))
        consumer = self._consumer
        deadline = self._clock() + self._config.revoke_timeout_s
        while True:
            self._take_completions(consumer, timeout=0.0, commit=False)
            if not self._in_flight_for(revoked):
                break
            self._cancel_after(deadline, revoked)
            await loop_sleep(consumer, 0.05)
        offsets = self._uncommitted(revoked)
        if offsets:
            try:
                await consumer.commit_async(offsets)
            except Exception as exc:  # a listener must not fail: the client would abort the join
                self._commit_failed(offsets, exc, "the next owner delivers them again")
            else:
                self._committed(offsets)
        for tp in revoked:
            self._states.pop(tp, None)
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(self.name, tp.topic, str(tp.partition))
        self._metrics.assigned.labels(function=self.name).set(len(self._states))

    def _in_flight_for(self, tps: set[TopicPartition]) -> bool:
        return any((s := self._states.get(tp)) is not None and s.in_flight for tp in tps)

    def _cancel_after(self, deadline: float, tps: set[TopicPartition]) -> None:
        """Once ``deadline`` passed, make the unfinished batches of ``tps`` give up (once)."""
        if self._clock() < deadline:
            return
        flights = [
            s.in_flight
            for tp in tps
            if (s := self._states.get(tp)) is not None
            and s.in_flight is not None
            and not s.in_flight.cancel.is_set()
        ]
        if flights:
            logger.warning("%s: cancelling unfinished batches of %s", self.name, _describe(tps))
        for flight in flights:
            flight.cancel.set()

    def _finish(self, consumer: Any, tps: set[TopicPartition]) -> None:
        """On the consumer thread at stop: wait for the batches of ``tps`` (cancel them after the
        revoke timeout), then commit what was delivered."""
        deadline = self._clock() + self._config.revoke_timeout_s
        while self._in_flight_for(tps):
            self._cancel_after(deadline, tps)
            self._take_completions(consumer, timeout=0.1)
        self._commit_delivered(consumer, force=True, only=tps)


def _describe(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "nothing"
