"""The project's Kafka seam: a producer and a consumer behind one small interface, two clients.

``make_producer(bootstrap, client=...)`` returns a producer with the project's durability
defaults (acks=all, idempotent, retries) from either client: ``"kafka-python"`` (the
reference, pure Python: ``KafkaProducer``) or ``"confluent"`` (librdkafka through
confluent-kafka: ``ConfluentProducer``). Both offer what the pipeline uses:

* ``send(topic, value=, key=)`` -> a future with ``add_callback(f, *args)`` (called
  ``f(*args, metadata)`` once acknowledged), ``add_errback(f, *args)`` (``f(*args, exc)``)
  and ``get(timeout)``; a record larger than the limits raises at once
  (``RecordTooLargeError``, or kafka-python's ``MessageSizeTooLargeError``);
* ``flush(timeout)``, ``close(timeout)``, ``partitions_for(topic)`` (asks the cluster);
* ``send_all(producer, items)`` sends a batch and returns once every record is acknowledged.

The consumer side is the part of kafka-python's ``KafkaConsumer`` the connector uses
(``subscribe`` with a rebalance listener, ``poll``, ``pause``/``resume``/``seek``, manual
``commit``, ``end_offsets``/``committed`` for lag); ``ConfluentConsumer`` offers the same over
librdkafka. Settings are given in kafka-python's names and translated for librdkafka.
Which client each part uses is a setting of that part (``KAFKA_CLIENT``), read at its entry
point; the defaults follow the bench (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from kafka.errors import KafkaError

from f2lib.errors import StreamError
from f2lib.kafka.python import (
    PRODUCER_DEFAULTS,
    AdminFactory,
    KeyCachingPartitioner,
    LazyAdmin,
    close_producer,
    kafka_admin_factory,
    make_python_producer,
)

Headers = Sequence[tuple[str, bytes]]
# (topic, key, value) or (topic, key, value, headers)
Outgoing = tuple[str, str | None, bytes] | tuple[str, str | None, bytes, Headers]

KafkaClient = Literal["kafka-python", "confluent"]
KAFKA_CLIENTS: tuple[KafkaClient, ...] = ("kafka-python", "confluent")

__all__ = [
    "KAFKA_CLIENTS",
    "PRODUCER_DEFAULTS",
    "AdminFactory",
    "Headers",
    "KafkaClient",
    "KeyCachingPartitioner",
    "LazyAdmin",
    "Outgoing",
    "close_producer",
    "kafka_admin_factory",
    "make_producer",
    "send_all",
]


def make_producer(bootstrap: str, *, client: KafkaClient = "kafka-python", **overrides: Any) -> Any:
    """A producer of ``client`` with the project's defaults; ``overrides`` in kafka-python's
    names (``linger_ms``, ``client_id``, ``delivery_timeout_ms``, ``bootstrap_timeout_ms``...)."""
    if client == "confluent":
        from f2lib.kafka.confluent import ConfluentProducer  # librdkafka only where chosen

        return ConfluentProducer(bootstrap, **overrides)
    return make_python_producer(bootstrap, **overrides)


def send_all(
    producer: Any,
    items: Iterable[Outgoing],
    *,
    timeout: float = 30.0,
) -> int:
    """Send ``(topic, key, value[, headers])`` items, flush, and wait until every one is
    acknowledged.

    Returns how many were sent; raises StreamError when any was not acknowledged.
    """
    own = getattr(producer, "send_all", None)
    if own is not None:
        return int(own(items, timeout=timeout))
    futures = []
    try:
        for item in items:
            topic, key, value = item[0], item[1], item[2]
            extra = {"headers": list(item[3])} if len(item) > 3 and item[3] else {}
            futures.append(
                producer.send(
                    topic, key=key.encode() if key is not None else None, value=value, **extra
                )
            )
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise StreamError(f"Kafka did not acknowledge the batch: {exc}") from exc
    return len(futures)
