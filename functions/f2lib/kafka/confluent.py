"""The confluent-kafka (librdkafka) implementation of the Kafka seam: producer and consumer.

Producer: records are handed to librdkafka (C), which batches, compresses and retries; a
thread serves its delivery reports, as kafka-python's I/O thread calls its futures' callbacks.
Keys go to partitions by murmur2, as the Java client and kafka-python assign them, so that a
device's records land in the same partition whichever client produced them.

Consumer: the part of kafka-python's ``KafkaConsumer`` the connector uses, over librdkafka's
``Consumer``; its records, topic-partitions and errors are kafka-python's types
(``ConsumerRecord``-like objects, ``kafka.TopicPartition``, ``kafka.errors.KafkaError``) so that
the connector's worker runs unchanged on either client. librdkafka calls the rebalance
listener from inside ``poll`` on the consumer's thread; the listener's coroutines (written for
kafka-python's I/O loop) are driven to completion there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaException
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError as PythonKafkaError

from f2lib.errors import RecordTooLargeError, StreamError
from f2lib.kafka.python import PRODUCER_DEFAULTS

logger = logging.getLogger(__name__)

# kafka-python's producer settings -> librdkafka's.
_PRODUCER_SETTINGS = {
    "acks": "acks",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "retries": "retries",
    "request_timeout_ms": "request.timeout.ms",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "client_id": "client.id",
    "compression_type": "compression.type",
}
_LOCAL_SETTINGS = ("max_block_ms", "bootstrap_timeout_ms", "partitioner")
POLL_S = 0.05


def producer_config(bootstrap: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka's configuration for kafka-python-named ``settings`` (unknown names refused)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
    }
    for name, value in settings.items():
        if name in _LOCAL_SETTINGS:
            continue
        if name not in _PRODUCER_SETTINGS:
            raise ValueError(f"no librdkafka setting for the producer setting {name!r}")
        config[_PRODUCER_SETTINGS[name]] = value
    return config


class DeliveryFuture:
    """One record's acknowledgement: callbacks as kafka-python's futures take them. Cheap to
    make (one per record): a lock, and an event only when someone waits in ``get``."""

    __slots__ = ("_callbacks", "_done", "_errbacks", "_event", "_lock", "error", "metadata")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._event: threading.Event | None = None
        self._callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._errbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.metadata: Any = None
        self.error: BaseException | None = None

    def add_callback(self, f: Callable[..., Any], *args: Any) -> DeliveryFuture:
        with self._lock:
            if not self._done:
                self._callbacks.append((f, args))
                return self
        if self.error is None:
            f(*args, self.metadata)
        return self

    def add_errback(self, f: Callable[..., Any], *args: Any) -> DeliveryFuture:
        with self._lock:
            if not self._done:
                self._errbacks.append((f, args))
                return self
        if self.error is not None:
            f(*args, self.error)
        return self

    def get(self, timeout: float | None = None) -> Any:
        with self._lock:
            if not self._done and self._event is None:
                self._event = threading.Event()
            event = self._event
        if event is not None and not event.wait(timeout):
            raise StreamError("the record was not acknowledged in time")
        if self.error is not None:
            raise self.error
        return self.metadata

    def on_delivery(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report for this record."""
        with self._lock:
            if err is not None:
                self.error = StreamError(f"Kafka did not take the record: {err}")
            else:
                self.metadata = msg
            self._done = True
            if self._event is not None:
                self._event.set()
            callbacks = self._errbacks if err is not None else self._callbacks
            self._callbacks, self._errbacks = [], []
        value = self.error if err is not None else msg
        for f, args in callbacks:
            try:
                f(*args, value)
            except Exception:  # a failing callback must not stop the delivery reports
                logger.exception("a delivery callback failed")


class _Countdown:
    """Delivery reports of one ``send_all`` batch: how many are due, and the failures."""

    def __init__(self) -> None:
        self.pending = 0
        self.errors: list[str] = []
        self._done = threading.Condition()

    def on_delivery(self, err: Any, msg: Any) -> None:
        with self._done:
            self.pending -= 1
            if err is not None:
                self.errors.append(str(err))
            if self.pending <= 0:
                self._done.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self.pending <= 0, timeout)


class ConfluentProducer:
    """A librdkafka producer with the project's defaults, offering the seam's producer calls."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        settings = {**PRODUCER_DEFAULTS, **overrides}
        self._max_block_s = float(settings.get("max_block_ms", 15_000)) / 1000
        self._bootstrap_timeout_s = float(settings.get("bootstrap_timeout_ms", 10_000)) / 1000
        try:
            self._producer = confluent_kafka.Producer(producer_config(bootstrap, settings))
            # As kafka-python's producer does: a cluster that does not answer within the
            # bootstrap timeout is an error now, not a first send that times out later.
            self._producer.list_topics(timeout=self._bootstrap_timeout_s)
        except KafkaException as exc:
            raise StreamError(f"cannot connect producer to {bootstrap}: {exc}") from exc
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(POLL_S)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        report: Any,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        deadline: float | None = None
        listed: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=report, headers=listed)
                return
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._max_block_s
                if now > deadline:
                    raise StreamError("the producer's queue stayed full") from None
                self._producer.poll(POLL_S)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE:
                    raise RecordTooLargeError(f"record too large for Kafka: {error}") from exc
                raise StreamError(f"Kafka refused the record: {error}") from exc

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        future = DeliveryFuture()
        self._produce(topic, value, key, future.on_delivery, headers)
        return future

    def send_all(self, items: Iterable[Sequence[Any]], *, timeout: float) -> int:
        """Produce every ``(topic, key, value[, headers])`` item and wait for all their
        acknowledgements (StreamError if not)."""
        countdown = _Countdown()
        sent = 0
        for item in items:
            topic, key, value = item[0], item[1], item[2]
            headers = item[3] if len(item) > 3 else None
            with countdown._done:
                countdown.pending += 1
            self._produce(topic, value, key.encode() if key is not None else None,
                          countdown.on_delivery, headers)  # fmt: skip
            sent += 1
        self._producer.flush(timeout)
        if not countdown.wait(timeout):
            raise StreamError(f"Kafka did not acknowledge {countdown.pending} of {sent} records")
        if countdown.errors:
            raise StreamError(f"Kafka did not acknowledge the batch: {countdown.errors[0]}")
        return sent

    def flush(self, timeout: float | None = None) -> None:
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise StreamError(f"{left} records not acknowledged within the flush timeout")

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, asked of the cluster (StreamError when it does not answer)."""
        try:
            metadata = self._producer.list_topics(topic, timeout=self._bootstrap_timeout_s)
        except KafkaException as exc:
            raise StreamError(f"Kafka does not answer: {exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise StreamError(f"topic {topic} is not available: {found and found.error}")
        return set(found.partitions)

    def close(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(5.0 if timeout is None else timeout)
        finally:
            self._closed.set()
            self._poller.join(timeout=2)


# --- consumer --------------------------------------------------------------------------------


class Record:
    """A consumed record with the fields of kafka-python's ``ConsumerRecord`` the seam uses."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Any) -> None:
        self.topic: str = message.topic()
        self.partition: int = message.partition()
        self.offset: int = message.offset()
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        self.timestamp: int = message.timestamp()[1]
        self.headers: list[tuple[str, bytes]] = message.headers() or []


class FatalConsumerError(PythonKafkaError):  # type: ignore[misc]
    """librdkafka says the consumer is unusable for good (a fatal error, for example a static
    member fenced after the coordinator moved): its owner must close it and make a new one."""


def _is_fatal(error: Any) -> bool:
    """The fatal error itself, or a later call's ``_FATAL`` ("a fatal error has occurred")."""
    return bool(error.fatal()) or error.code() == confluent_kafka.KafkaError._FATAL


def _python_error(exc: BaseException) -> PythonKafkaError:
    error = exc.args[0] if exc.args else None
    if isinstance(error, confluent_kafka.KafkaError) and _is_fatal(error):
        return FatalConsumerError(str(exc))
    return PythonKafkaError(str(exc))


def _drive(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a listener coroutine to its end on this thread (its awaits complete at once: the
    seam's sleeps and ``commit_async`` are plain calls here)."""
    try:
        while True:
            coroutine.send(None)
    except StopIteration:
        return


class ConfluentConsumer:
    """kafka-python's ``KafkaConsumer`` calls the connector makes, over librdkafka."""

    def __init__(self, config: Mapping[str, Any], drain_max: int = 100_000) -> None:
        try:
            self._consumer = confluent_kafka.Consumer(dict(config))
        except KafkaException as exc:
            raise _python_error(exc) from exc
        self._drain_max = drain_max
        self._listener: Any = None

    # -- group ---------------------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self._listener = listener
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            tps = {TopicPartition(p.topic, p.partition) for p in partitions}
            _drive(self._listener.on_partitions_assigned(tps))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            tps = {TopicPartition(p.topic, p.partition) for p in partitions}
            _drive(self._listener.on_partitions_revoked(tps))

    # -- records -------------------------------------------------------------------------------

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        """What is there now (waiting up to ``timeout_ms`` for the first record), by partition."""
        try:
            first = self._consumer.poll(timeout_ms / 1000)
            if first is None:
                return {}
            messages = [first, *self._consumer.consume(self._drain_max, 0)]
        except KafkaException as exc:
            raise _python_error(exc) from exc
        found: dict[TopicPartition, list[Record]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    continue
                if _is_fatal(error):
                    raise FatalConsumerError(str(error))
                raise PythonKafkaError(str(error))
            record = Record(message)
            found.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return found

    def pause(self, *tps: TopicPartition) -> None:
        self._consumer.pause([confluent_kafka.TopicPartition(t.topic, t.partition) for t in tps])

    def resume(self, *tps: TopicPartition) -> None:
        self._consumer.resume([confluent_kafka.TopicPartition(t.topic, t.partition) for t in tps])

    def seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(confluent_kafka.TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise _python_error(exc) from exc

    # -- offsets -------------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        parts = [
            confluent_kafka.TopicPartition(tp.topic, tp.partition, meta.offset)
            for tp, meta in offsets.items()
        ]
        try:
            results = self._consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            raise _python_error(exc) from exc
        failed = [p for p in results or () if p.error is not None]
        if failed:
            raise PythonKafkaError(f"commit failed for {failed[0].topic}[{failed[0].partition}]")

    async def commit_async(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        self.commit(offsets)

    def committed(self, tp: TopicPartition, timeout_s: float = 10.0) -> int | None:
        try:
            (found,) = self._consumer.committed(
                [confluent_kafka.TopicPartition(tp.topic, tp.partition)], timeout=timeout_s
            )
        except KafkaException as exc:
            raise _python_error(exc) from exc
        return None if found.offset < 0 else int(found.offset)

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(tp.topic, tp.partition), timeout=10.0, cached=False
            )
        except KafkaException as exc:
            raise _python_error(exc) from exc
        return int(low), int(high)

    def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[1] for tp in tps}

    def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[0] for tp in tps}

    def close(self, autocommit: bool = False) -> None:
        self._consumer.close()


def consumer_config(
    *,
    bootstrap: str,
    group_id: str,
    client_id: str,
    fetch_min_bytes: int,
    fetch_max_wait_ms: int,
    max_partition_fetch_bytes: int,
    fetch_max_bytes: int,
    max_poll_interval_ms: int,
    queued_max_kbytes: int = 8192,
    session_timeout_ms: int | None = None,
    group_instance_id: str | None = None,
) -> dict[str, Any]:
    """librdkafka's consumer settings: manual commits, earliest offset when the group is new,
    a prefetch queue bounded to ``queued_max_kbytes`` per partition (memory stays flat), and
    the session timeout and static membership where given."""
    membership: dict[str, Any] = {}
    if session_timeout_ms is not None:
        membership["session.timeout.ms"] = session_timeout_ms
        membership["heartbeat.interval.ms"] = session_timeout_ms // 3
    if group_instance_id:
        membership["group.instance.id"] = group_instance_id
    return {
        **membership,
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.min.bytes": fetch_min_bytes,
        "fetch.wait.max.ms": fetch_max_wait_ms,
        "max.partition.fetch.bytes": max_partition_fetch_bytes,
        "fetch.max.bytes": fetch_max_bytes,
        "max.poll.interval.ms": max_poll_interval_ms,
        "queued.max.messages.kbytes": queued_max_kbytes,
    }
