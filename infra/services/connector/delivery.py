"""Delivering one batch to a function: retry what may pass later, bisect what the function refuses.

The rules, per answer of ``POST /function/<name>``:

* 2xx: delivered.
* no answer (connection error, timeout), 5xx, 408, 429, and 401/403/404/405 (the gateway or
  the deployment is wrong, not the records): the same batch again, after a capped exponential
  backoff; never skipped.
* any other 4xx: the function refuses the input. A batch of several records is split in two
  and each half delivered in order, until the refused record is alone; that record is written
  to the dead-letter topic with the function's answer as the reason.

The caller commits the batch's offsets only after ``deliver`` returned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from f2lib.backoff import Backoff
from f2lib.contracts.invocation import Element
from f2lib.contracts.marks import Marks
from f2lib.contracts.records import CONNECTOR_STAGE_PREFIX, dead_letter, dump_json
from f2lib.errors import DeliveryAbandoned, GatewayError, StreamError
from f2lib.kafka import send_all
from infra.services.connector.batching import Batch
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.kit.openfaas import Invocation

logger = logging.getLogger(__name__)

NOT_THE_RECORDS = frozenset({401, 403, 404, 405, 408, 429})
REASON_LIMIT = 1000
# a little jitter so that the workers of a function do not retry in step
DELIVERY_BACKOFF = Backoff(base_s=0.5, cap_s=30.0, jitter=0.1)


class Invoker(Protocol):
    """Calls a function with a batch body (``OpenFaaSClient`` in production)."""

    def invoke(self, function: str, body: bytes, headers: Mapping[str, str]) -> Invocation: ...


class DeadLetterWriter(Protocol):
    """Writes ``(key, value)`` dead letters durably, or raises StreamError."""

    def write(self, letters: Sequence[tuple[str | None, bytes]]) -> None: ...


class KafkaDeadLetters:
    """Dead letters produced to ``topic`` and flushed until Kafka acknowledged each."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write(self, letters: Sequence[tuple[str | None, bytes]]) -> None:
        send_all(self._producer, ((self._topic, key, value) for key, value in letters))


def is_refusal(status: int) -> bool:
    """A 4xx that says the input is bad, so that splitting the batch can find the bad record."""
    return 400 <= status < 500 and status not in NOT_THE_RECORDS


@dataclass(slots=True)
class DeliveryReport:
    """What delivering one batch took."""

    delivered: int = 0
    dead_lettered: int = 0
    calls: int = 0
    splits: int = 0


class BatchDelivery:
    """Delivers batches to one function; ``cancel`` makes it give up (DeliveryAbandoned)."""

    def __init__(
        self,
        function: str,
        invoker: Invoker,
        dead_letters: DeadLetterWriter,
        metrics: ConnectorMetrics,
        backoff: Backoff | None = None,
    ) -> None:
        self.function = function
        self.stage = f"{CONNECTOR_STAGE_PREFIX}{function}"
        self._invoker = invoker
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._backoff = backoff or DELIVERY_BACKOFF

    def deliver(self, batch: Batch, cancel: threading.Event) -> DeliveryReport:
        report = DeliveryReport()
        letters: list[tuple[str | None, bytes]] = []
        pending = [batch]
        while pending:
            part = pending.pop()
            answer = self._call_until_answered(part, cancel, report)
            if answer.ok:
                report.delivered += part.count
                continue
            if part.count > 1:
                left, right = part.split()
                pending.extend((right, left))
                report.splits += 1
                self._metrics.splits.labels(function=self.function).inc()
                logger.info(
                    "%s refused %s[%d] offsets %d..%d (HTTP %d); splitting %d into %d + %d",
                    self.function, part.topic, part.partition, part.first_offset,
                    part.last_offset, answer.status, part.count, left.count, right.count,
                )  # fmt: skip
                continue
            (element,) = part.elements
            letters.append(self._letter(element, answer))
        if letters:
            self._write_dead_letters(batch, letters, cancel)
            report.dead_lettered = len(letters)
        return report

    def _call_until_answered(
        self, part: Batch, cancel: threading.Event, report: DeliveryReport
    ) -> Invocation:
        body, headers = part.body(), part.headers()
        attempt = 0
        while True:
            if cancel.is_set():
                raise DeliveryAbandoned(f"delivery of {part.topic}[{part.partition}] abandoned")
            report.calls += 1
            try:
                answer = self._invoker.invoke(self.function, body, headers)
            except GatewayError as exc:
                reason = "timeout" if isinstance(exc.__cause__, requests.Timeout) else "connection"
                self._metrics.invocations.labels(function=self.function, status=reason).inc()
                problem = str(exc)
            else:
                self._metrics.invocations.labels(
                    function=self.function, status=str(answer.status)
                ).inc()
                if answer.ok or is_refusal(answer.status):
                    return answer
                reason = f"http_{answer.status}"
                problem = f"HTTP {answer.status}: {answer.body[:200]!r}"
            attempt += 1
            delay = self._backoff.delay(attempt)
            self._metrics.retries.labels(function=self.function, reason=reason).inc()
            logger.warning(
                "%s: %s[%d] offset %d (%d records) not delivered (%s); retry %d in %.1fs",
                self.function, part.topic, part.partition, part.first_offset, part.count,
                problem, attempt, delay,
            )  # fmt: skip
            if cancel.wait(delay):
                raise DeliveryAbandoned(f"delivery of {part.topic}[{part.partition}] abandoned")

    def _letter(self, element: Element, answer: Invocation) -> tuple[str | None, bytes]:
        reason = answer.body.strip()[:REASON_LIMIT] or f"HTTP {answer.status}"
        logger.warning(
            "%s refused %s[%d] offset %d alone (HTTP %d); dead-lettering it",
            self.function, element.topic, element.partition, element.offset, answer.status,
        )  # fmt: skip
        letter = dead_letter(
            element.value,
            stage=self.stage,
            reason=reason,
            error=f"HTTP {answer.status} from function {self.function}",
            key=element.key,
            source={
                "topic": element.topic,
                "partition": element.partition,
                "offset": element.offset,
                "function": self.function,
            },
            marks=Marks.from_headers(element.headers),
        )
        return element.key, dump_json(letter)

    def _write_dead_letters(
        self, batch: Batch, letters: list[tuple[str | None, bytes]], cancel: threading.Event
    ) -> None:
        attempt = 0
        while True:
            try:
                self._dead_letters.write(letters)
            except StreamError as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                self._metrics.retries.labels(function=self.function, reason="dead_letter").inc()
                logger.warning("%s: dead letters not written (%s); retry in %.1fs",
                               self.function, exc, delay)  # fmt: skip
                if cancel.wait(delay):
                    raise DeliveryAbandoned("dead-letter write abandoned") from exc
                continue
            self._metrics.dead_letters.labels(function=self.function, topic=batch.topic).inc(
                len(letters)
            )
            return
