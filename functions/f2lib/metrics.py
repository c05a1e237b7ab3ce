"""Function-side Prometheus metrics: one registry per replica process, served on ``/_/metrics``.

Every replica of a function is its own process (a Pod on Kubernetes, a process of the local
gateway), so each keeps its own counters and serves them itself on ``/_/metrics`` (the template's
``index.py``). Prometheus scrapes every replica, found by Kubernetes pod discovery or by the
local gateway's file-SD target list, and adds the target labels ``function`` and ``replica``;
queries sum over replicas (``sum by (function) (rate(f2_function_records_in_total[1m]))``).
A replica that stops takes its counts along; ``rate`` and ``increase`` absorb that as a reset.
prometheus-client's multiprocess mode is not used: it shares files between workers of one host,
not between replicas that come and go on different machines.

Series (units in the names; labels have a handful of values each):
  f2_function_invocations_total{code,outcome}   outcome: ok, refused (4xx), retry (503), error
  f2_function_handler_duration_seconds{outcome} time in ``handle``
  f2_function_records_in_total                  records received (batch members or one record)
  f2_function_records_out_total{kind}           kind: measurement, stored, dead_letter
  f2_function_last_success_timestamp_seconds    Unix time of the last 2xx
  f2_decode_failures_total{reason}              RecordError.reason of each dead-lettered record
  f2_sink_rows_inserted_total                   rows the sink's INSERT added
  f2_sink_duplicates_skipped_total              rows already present (redelivery), not added
  f2_sink_rows_updated_total                    rows a reprocess batch replaced (values changed)
  f2_sink_rows_unchanged_total                  rows a reprocess batch found equal already
  f2_provision_certificates_total{action}       action: issued, rotated, revoked
  f2_provision_refused_total{reason}            ProvisioningError.code of refused requests
  f2_pipeline_end_to_end_latency_seconds        device timestamp -> sink commit, per row
  f2_command_requests_total{action,result}      result: ok, rejected, expired (the device's
                                                answer), sent (no answer in time), refused, failed
  f2_command_reply_latency_seconds{path}        request -> device reply; path: in_time (the
                                                command function waited), late (reply function)
  f2_command_replies_total{outcome}             replies the reply function handled: recorded,
                                                duplicate, dead_letter
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from f2lib.errors import RecordError

METRICS_PATH = "/_/metrics"
RECORD_KINDS = ("measurement", "stored", "dead_letter")
PROVISION_ACTIONS = ("issued", "rotated", "revoked")
OUTCOMES = ("ok", "refused", "retry", "error")
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
REPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
COMMAND_RESULTS = ("ok", "rejected", "expired", "sent", "refused", "failed")
REPLY_PATHS = ("in_time", "late")
REPLY_OUTCOMES = ("recorded", "duplicate", "dead_letter")


def outcome_of(status: int) -> str:
    """The outcome label of an HTTP status the handler answered."""
    if 200 <= status < 400:
        return "ok"
    if status == 503:
        return "retry"
    if 400 <= status < 500:
        return "refused"
    return "error"


def record_error_reasons() -> tuple[str, ...]:
    """Every ``reason`` a RecordError subclass carries (the decode failure label values)."""
    reasons: list[str] = []
    pending: list[type[RecordError]] = [RecordError]
    while pending:
        cls = pending.pop()
        reasons.append(cls.reason)
        pending.extend(cls.__subclasses__())
    return tuple(sorted(set(reasons)))


class FunctionMetrics:
    """The series one replica serves; methods are safe to call from any thread."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        process_metrics: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._clock = clock
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
        self.invocations = Counter(
            "f2_function_invocations_total",
            "Handler invocations by HTTP status and outcome",
            ["code", "outcome"],
            registry=r,
        )
        self.handler_duration = Histogram(
            "f2_function_handler_duration_seconds",
            "Time spent in the handler, by outcome",
            ["outcome"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.records_in = Counter(
            "f2_function_records_in_total", "Records received by the handler", registry=r
        )
        self.records_out = Counter(
            "f2_function_records_out_total",
            "Records the handler made durable, by kind (measurement, stored, dead_letter)",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "f2_function_last_success_timestamp_seconds",
            "Unix time of the handler's last 2xx answer",
            registry=r,
        )
        self.decode_failures = Counter(
            "f2_decode_failures_total",
            "Records the decoder dead-lettered, by reason",
            ["reason"],
            registry=r,
        )
        self.rows_inserted = Counter(
            "f2_sink_rows_inserted_total", "Rows added to iot_measurements", registry=r
        )
        self.duplicates_skipped = Counter(
            "f2_sink_duplicates_skipped_total",
            "Rows already in iot_measurements (a redelivered batch), not added again",
            registry=r,
        )
        self.rows_updated = Counter(
            "f2_sink_rows_updated_total",
            "Rows of iot_measurements a reprocess batch replaced with other values",
            registry=r,
        )
        self.rows_unchanged = Counter(
            "f2_sink_rows_unchanged_total",
            "Rows of a reprocess batch whose stored values were equal already",
            registry=r,
        )
        self.certificates = Counter(
            "f2_provision_certificates_total",
            "Device certificates by action (issued, rotated, revoked)",
            ["action"],
            registry=r,
        )
        self.refusals = Counter(
            "f2_provision_refused_total",
            "Provisioning requests refused, by reason",
            ["reason"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "f2_pipeline_end_to_end_latency_seconds",
            "From the device's timestamp to the commit of its row",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commands = Counter(
            "f2_command_requests_total",
            "Command requests by action and result",
            ["action", "result"],
            registry=r,
        )
        self.reply_latency = Histogram(
            "f2_command_reply_latency_seconds",
            "From a command request to its device's reply, by path (in_time, late)",
            ["path"],
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.replies = Counter(
            "f2_command_replies_total",
            "Command replies taken from iot_command_replies, by outcome",
            ["outcome"],
            registry=r,
        )
        for kind in RECORD_KINDS:
            self.records_out.labels(kind)
        for reason in record_error_reasons():
            self.decode_failures.labels(reason)
        for action in PROVISION_ACTIONS:
            self.certificates.labels(action)
        for path in REPLY_PATHS:
            self.reply_latency.labels(path)
        for outcome in REPLY_OUTCOMES:
            self.replies.labels(outcome)

    # -- every function (called by the template's index.py) -----------------------------------

    def observe_invocation(self, status: int, seconds: float) -> None:
        outcome = outcome_of(status)
        self.invocations.labels(str(status), outcome).inc()
        self.handler_duration.labels(outcome).observe(max(0.0, seconds))
        if outcome == "ok":
            self.last_success.set(self._clock())

    def received(self, records: int) -> None:
        self.records_in.inc(records)

    def emitted(self, kind: str, records: int) -> None:
        """``kind``: measurement (decode's output), stored (sink rows), dead_letter."""
        if records:
            self.records_out.labels(kind).inc(records)

    # -- decode -------------------------------------------------------------------------------

    def decode_failed(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.decode_failures.labels(reason).inc()

    # -- sink ---------------------------------------------------------------------------------

    def rows_written(self, inserted: int, duplicates: int) -> None:
        self.rows_inserted.inc(inserted)
        self.duplicates_skipped.inc(duplicates)

    def rows_overwritten(self, updated: int, unchanged: int) -> None:
        """What a reprocess batch did to the rows it overwrote."""
        self.rows_updated.inc(updated)
        self.rows_unchanged.inc(unchanged)

    def observe_end_to_end(
        self, device_times: Iterable[datetime], committed_at: datetime | None = None
    ) -> None:
        """Latency of each committed row from its device timestamp (naive times are UTC)."""
        now = committed_at or datetime.fromtimestamp(self._clock(), UTC)
        for moment in device_times:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            self.end_to_end.observe(max(0.0, (now - moment).total_seconds()))

    # -- provision ----------------------------------------------------------------------------

    def certificate(self, action: str) -> None:
        """``action``: issued, rotated or revoked."""
        self.certificates.labels(action).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    # -- command and command_reply ------------------------------------------------------------

    def command(self, action: str, result: str) -> None:
        """``action``: a known action or ``unknown``; ``result``: one of COMMAND_RESULTS."""
        self.commands.labels(action, result).inc()

    def reply_received(self, path: str, seconds: float) -> None:
        self.reply_latency.labels(path).observe(max(0.0, seconds))

    def reply_handled(self, outcome: str, count: int = 1) -> None:
        if count:
            self.replies.labels(outcome).inc(count)

    # -- exposition ---------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /_/metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_default: FunctionMetrics | None = None
_default_lock = threading.Lock()


def function_metrics() -> FunctionMetrics:
    """This process's FunctionMetrics, made on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = FunctionMetrics()
    return _default
