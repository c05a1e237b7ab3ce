"""Kafka producing with kafka-python: one configured producer, and batches sent then flushed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from f2lib.errors import StreamError

logger = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "retries": 5,
    "request_timeout_ms": 15_000,
    "max_block_ms": 15_000,
}


def make_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """A producer with the project's durability defaults (acks=all, idempotent, retries)."""
    settings = {**PRODUCER_DEFAULTS, **overrides}
    try:
        return KafkaProducer(bootstrap_servers=bootstrap.split(","), **settings)
    except KafkaError as exc:
        raise StreamError(f"cannot connect producer to {bootstrap}: {exc}") from exc


def send_all(
    producer: KafkaProducer,
    items: Iterable[tuple[str, str | None, bytes]],
    *,
    timeout: float = 30.0,
) -> int:
    """Send ``(topic, key, value)`` items, flush, and wait until every one is acknowledged.

    Returns how many were sent; raises StreamError when any was not acknowledged.
    """
    futures = []
    try:
        for topic, key, value in items:
            futures.append(
                producer.send(topic, key=key.encode() if key is not None else None, value=value)
            )
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise StreamError(f"Kafka did not acknowledge the batch: {exc}") from exc
    return len(futures)
