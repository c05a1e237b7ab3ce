"""What one run of redrive or reprocess exports: Prometheus series written to a textfile.

A run lives for seconds, so nothing could scrape it: at its end (refused runs included) it
writes its series to ``<F2_METRICS_DIR>/<tool>.prom`` (or ``--metrics-file``), atomically, in
the text format node_exporter's textfile collector reads. Series:

  f2_replay_records_total{tool,stage,reason,outcome}  dead letters (redrive) or raw records
                                                      (reprocess) by what became of them
  f2_replay_rows_total{tool,outcome}                  reprocess: rows updated, unchanged,
                                                      inserted; measurements re-decoded
  f2_replay_last_run_timestamp_seconds{tool}          when the run ended
  f2_replay_last_run_duration_seconds{tool}
  f2_replay_last_run_success{tool}                    1 done, 0 refused or incomplete
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

logger = logging.getLogger(__name__)


class ReplayMetrics:
    """The series of one run of ``tool`` (redrive or reprocess)."""

    def __init__(self, tool: str, clock: Callable[[], float] = time.time) -> None:
        self.tool = tool
        self._clock = clock
        self._started = clock()
        self.registry = CollectorRegistry()
        self.records = Counter(
            "f2_replay_records_total",
            "Records a replay run read, by stage, reason and what became of them",
            ["tool", "stage", "reason", "outcome"],
            registry=self.registry,
        )
        self.rows = Counter(
            "f2_replay_rows_total",
            "Rows and measurements of a reprocess run, by outcome",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.finished = Gauge(
            "f2_replay_last_run_timestamp_seconds",
            "When the run ended",
            ["tool"],
            registry=self.registry,
        )
        self.duration = Gauge(
            "f2_replay_last_run_duration_seconds",
            "How long the run took",
            ["tool"],
            registry=self.registry,
        )
        self.success = Gauge(
            "f2_replay_last_run_success",
            "1 when the run did what it was asked, 0 when refused or incomplete",
            ["tool"],
            registry=self.registry,
        )

    def record(self, stage: str, reason: str, outcome: str, count: int = 1) -> None:
        if count:
            self.records.labels(self.tool, stage, reason, outcome).inc(count)

    def row(self, outcome: str, count: int) -> None:
        if count:
            self.rows.labels(self.tool, outcome).inc(count)

    def finish(self, success: bool) -> None:
        now = self._clock()
        self.finished.labels(self.tool).set(now)
        self.duration.labels(self.tool).set(max(0.0, now - self._started))
        self.success.labels(self.tool).set(1 if success else 0)

    def write(self, path: Path | None) -> None:
        """Write the textfile (nothing when ``path`` is None); a failure is only logged."""
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), self.registry)
        except OSError as exc:
            logger.warning("metrics not written to %s: %s", path, exc)
