"""The batch-function contract shared by decode and sink: parse, process, map errors to statuses.

A batch function takes the connector's JSON array (or one record, as OpenFaaS's per-message
connector sends it), processes it, and answers 2xx only once its output is durable:
400 for a malformed batch, 500 when misconfigured, 503 when a store or Kafka is unavailable
(the connector retries), 405 for anything but POST.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from f2lib.contracts.invocation import ConnectorRecord, parse_invocation
from f2lib.errors import BatchError, ConfigError, StoreError, StreamError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BatchProcessor(Protocol):
    """What a batch function does with the records of one invocation."""

    def process(self, records: list[ConnectorRecord]) -> dict[str, int]: ...


class Lazy(Generic[T]):
    """A value built on first use, once per process; a failed build is tried again next time."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self.value: T | None = None

    def get(self) -> T:
        value = self.value
        if value is None:
            with self._lock:
                if self.value is None:
                    self.value = self._build()
                value = self.value
        return value


def json_response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json"},
    }


def handle_batch(event: Any, processor: Callable[[], BatchProcessor], name: str) -> dict[str, Any]:
    """The python3-http entry point of batch function ``name``."""
    if getattr(event, "method", "POST") != "POST":
        return json_response(405, {"error": "POST a batch or a record"})
    try:
        records = parse_invocation(event.body, event.headers)
    except BatchError as exc:
        logger.warning("%s refused a malformed batch: %s", name, exc)
        return json_response(400, {"error": str(exc)})
    try:
        counts = processor().process(records)
    except ConfigError as exc:
        logger.error("%s is misconfigured: %s", name, exc)
        return json_response(500, {"error": "function misconfigured"})
    except (StoreError, StreamError) as exc:
        logger.warning("%s batch of %d records not done, retry: %s", name, len(records), exc)
        return json_response(503, {"error": str(exc)})
    logger.info("%s batch done %s", name, counts)
    return json_response(200, counts)
