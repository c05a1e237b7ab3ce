"""The kafka-python implementation of the Kafka seam: a configured producer, admin clients."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner import DefaultPartitioner

from f2lib.errors import StreamError

logger = logging.getLogger(__name__)

FORCE_CLOSE_WAIT_S = 5.0
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "retries": 5,
    "request_timeout_ms": 15_000,
    "max_block_ms": 15_000,
}


class KeyCachingPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner (murmur2 of the key, as the Java client assigns it),
    remembering each key's partition: the pipeline's keys are device ids, few and repeated,
    and the pure-Python murmur2 was about a fifth of decode's time in ``producer.send``."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._partitions: dict[tuple[str, bytes, int], int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        known = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not known or serialized_key is None:
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        cache_key = (topic, serialized_key, len(known))
        found = self._partitions.get(cache_key)
        if found is None:
            if len(self._partitions) >= self._max_keys:
                self._partitions.clear()
            found = int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
            self._partitions[cache_key] = found
        return found


def make_python_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer with the project's durability defaults (acks=all, idempotent,
    retries); ``overrides`` in kafka-python's names."""
    settings = {**PRODUCER_DEFAULTS, "partitioner": KeyCachingPartitioner(), **overrides}
    try:
        return KafkaProducer(bootstrap_servers=bootstrap.split(","), **settings)
    except KafkaError as exc:
        raise StreamError(f"cannot connect producer to {bootstrap}: {exc}") from exc


def close_producer(producer: Any, timeout: float) -> None:
    """Close a kafka-python producer within about ``timeout`` seconds, whatever it holds.

    Never raises. kafka-python 3.0.12's ``close()`` flushes first and raises KafkaTimeoutError
    while records are pending, before it would force the close; its sender thread then goes on.
    So after that error the sender is closed forcefully (the pending records fail) and
    ``close()`` is called again, now with nothing left to flush.
    """
    try:
        producer.close(timeout=timeout)
        return
    except KafkaError as exc:
        logger.info("producer not closed within %.1fs (%s); closing it forcefully", timeout, exc)
    except Exception as exc:  # closing must never raise into a stop
        logger.warning("closing the producer failed: %s", exc)
        return
    sender = getattr(producer, "_sender", None)  # no public way to force a close with records held
    if sender is not None:
        sender.force_close()
        sender.join(max(timeout, FORCE_CLOSE_WAIT_S))
    try:
        producer.close(timeout=0)
    except Exception as exc:  # the records it held have failed; nothing more to do
        logger.warning("producer still not closed: %s", exc)


AdminFactory = Callable[[], Any]


def kafka_admin_factory(
    bootstrap: str,
    client_id: str,
    request_timeout_ms: int = 10_000,
    bootstrap_timeout_ms: int | None = None,
) -> AdminFactory:
    """Makes kafka-python admin clients for ``bootstrap`` (the client's bootstrap timeout when
    ``bootstrap_timeout_ms`` is None)."""
    extra = {} if bootstrap_timeout_ms is None else {"bootstrap_timeout_ms": bootstrap_timeout_ms}

    def make() -> Any:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            **extra,
        )

    return make


class LazyAdmin:
    """One long-lived admin client: made on first use, closed and forgotten by ``reset()``
    (after a failure), made again on the next use. Not thread-safe; callers lock."""

    def __init__(self, factory: AdminFactory) -> None:
        self._factory = factory
        self._admin: Any = None

    def get(self) -> Any:
        if self._admin is None:
            self._admin = self._factory()
        return self._admin

    def reset(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception as exc:  # closing a broken client must not hide the first error
                logger.debug("closing the admin client failed: %s", exc)
