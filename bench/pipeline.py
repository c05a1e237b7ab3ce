"""The pipeline end to end on the harness's own stack: stages, sustained rate, latency, burst.

Commit time is read from ``iot_measurements.ingested_at`` (``DEFAULT now()``: the start of the
sink's transaction, which commits after its COPY and INSERT, a few milliseconds later); the
publish time is the payload's timestamp, taken just before ``publish``. Both clocks are this
machine's.

Stages alone: the other stages are paused with SIGSTOP (the connector while the bridge fills
``raw_iot_data``; the sink replicas while decode fills ``decoded_iot_data``) and resumed with
SIGCONT, well within Kafka's session timeout and the connector's invocation timeout. A stage's
rate is taken from its first observed progress to its last record, so a resumed consumer's
first fetch is not counted as the stage's work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from kafka import KafkaConsumer, TopicPartition

from bench.processes import CpuByGroup, MemorySampler, stack_groups
from bench.publisher import PublisherPool, PublishPlan, PublishResult, combined
from bench.stats import LatencySummary, MemoryLevel, memory_level, rate, summarize_latency
from bench.workload import Fleet
from f2lib.errors import BenchError
from infra.autoscaler.lag import KafkaLagReader, kafka_admin_factory
from infra.runtime.stack import MONITOR_USER, TIMESERIES_DB, LocalStack

logger = logging.getLogger(__name__)

RAW_TOPIC = "raw_iot_data"
DECODED_TOPIC = "decoded_iot_data"
LAG_GROUPS = {"f2-connector-decode": [RAW_TOPIC], "f2-connector-sink": [DECODED_TOPIC]}
POLL_S = 0.1
STOP_LIMIT_S = 40.0  # below Kafka's 45 s session timeout and the connector's 65 s invoke timeout


@dataclass
class Progress:
    """A counter watched until it reaches a goal: when it first moved and when it got there."""

    start_value: int
    goal: int
    started: float
    first_move: float | None = None
    value_at_first_move: int = 0
    done_at: float | None = None
    final_value: int = 0

    def observe(self, value: int, now: float) -> bool:
        if self.first_move is None and value > self.start_value:
            self.first_move, self.value_at_first_move = now, value
        self.final_value = value
        if value >= self.goal:
            self.done_at = now
            return True
        return False

    def steady_rate(self) -> float:
        """Items per second from the first observed move to the goal."""
        end = self.done_at
        if end is None or self.first_move is None or end <= self.first_move:
            return rate(self.final_value - self.start_value, (end or time.time()) - self.started)
        return rate(self.final_value - self.value_at_first_move, end - self.first_move)


def watch(read: Callable[[], int], goal: int, timeout_s: float, started: float) -> Progress:
    progress = Progress(read(), goal, started)
    deadline = time.monotonic() + timeout_s
    while not progress.observe(read(), time.time()):
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    return progress


def _signal(pids: Sequence[int], signum: int) -> None:
    """Send ``signum`` to each process still there (SIGSTOP pauses a stage, SIGCONT resumes)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@dataclass
class LagWatch:
    """Consumer lag of the connector's groups, sampled in a thread: the stage that queues."""

    bootstrap: str
    interval_s: float = 1.0
    max_lag: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._reader = KafkaLagReader(kafka_admin_factory(self.bootstrap, client_id="f2-bench-lag"))

    def __enter__(self) -> LagWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._reader.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                lags = {g: lag.total for g, lag in self._reader.read(LAG_GROUPS).items()}
            except Exception as exc:  # a missed sample is not a failed benchmark
                logger.debug("lag sample failed: %s", exc)
                continue
            self.samples.append({"at": time.time(), **lags})
            for group, lag in lags.items():
                self.max_lag[group] = max(self.max_lag.get(group, 0), lag)


class Pipeline:
    """Drives the stack's pipeline with publisher processes and reads what it stored."""

    def __init__(self, stack: LocalStack, fleet: Fleet, pool: PublisherPool) -> None:
        self.stack = stack
        self.fleet = fleet
        self.pool = pool
        self.bootstrap = f"127.0.0.1:{stack.ports.kafka}"
        self._db = psycopg2.connect(stack.dsn(TIMESERIES_DB))
        self._db.autocommit = True
        self._offsets = KafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id="f2-bench-offsets", enable_auto_commit=False
        )
        self._partitions = {
            topic: [
                TopicPartition(topic, p)
                for p in sorted(self._offsets.partitions_for_topic(topic) or ())
            ]
            for topic in (RAW_TOPIC, DECODED_TOPIC)
        }
        self._seed = 100

    def close(self) -> None:
        self._offsets.close()
        self._db.close()

    # --- reading ---------------------------------------------------------------------------

    def _one(self, query: str) -> Any:
        with self._db.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
        return row[0] if row else None

    def rows(self) -> int:
        return int(self._one("SELECT count(*) FROM iot_measurements"))

    def last_ingested(self) -> float:
        return float(self._one("SELECT extract(epoch FROM max(ingested_at)) FROM iot_measurements"))

    def recent_latency(self) -> float | None:
        """The worst publish -> commit latency of the rows committed in the last second (None
        when none was): high while a backlog drains, back to normal once it has."""
        value = self._one(
            "SELECT extract(epoch FROM max(ingested_at - time)) FROM iot_measurements"
            " WHERE ingested_at > now() - interval '1 second'"
        )
        return None if value is None else float(value)

    def latencies(self) -> list[float]:
        """Per message: its last row's commit (ingested_at) minus its payload timestamp."""
        with self._db.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM max(ingested_at) - time) FROM iot_measurements"
                " GROUP BY device_id, topic, time"
            )
            return [float(row[0]) for row in cur.fetchall()]

    def truncate(self) -> None:
        with self._db.cursor() as cur:
            cur.execute("TRUNCATE iot_measurements")

    def end_offset(self, topic: str) -> int:
        ends = self._offsets.end_offsets(self._partitions[topic])
        return int(sum(ends.values()))

    def wait_rows(self, goal: int, timeout_s: float, started: float) -> Progress:
        return watch(self.rows, goal, timeout_s, started)

    # --- publishing ------------------------------------------------------------------------

    def plan(
        self,
        count: int,
        rate_per_s: float | None,
        fleet: Fleet | None = None,
        tag: str = "pub",
        start_at: float | None = None,
    ) -> PublishPlan:
        self._seed += 1
        return PublishPlan(
            "127.0.0.1",
            self.stack.ports.mqtt,
            MONITOR_USER,
            self.stack.secret("mqtt-monitor-password"),
            fleet or self.fleet,
            count,
            rate_per_s,
            seed=self._seed,
            client_id=f"f2-bench-{tag}-{self._seed}",
            start_at=start_at,
        )

    def publish(self, plans: list[PublishPlan]) -> PublishResult:
        result = combined(self.pool.run(plans))
        if result.acked < result.sent:
            raise BenchError(f"broker acknowledged {result.acked} of {result.sent} messages")
        return result

    # --- processes -------------------------------------------------------------------------

    def pids(self, prefix: str) -> list[int]:
        groups = stack_groups(self.stack.pid_path)
        return [
            pid for name, pids in groups.items() if name.split("#")[0] == prefix for pid in pids
        ]


# --- measurements -------------------------------------------------------------------------------


@dataclass
class StageFigures:
    """Each stage of the pipeline alone, on ``messages`` messages giving ``rows`` rows."""

    messages: int
    rows: int
    bridge_msgs_per_s: float
    decode_msgs_per_s: float
    decode_rows_per_s: float
    sink_rows_per_s: float
    sink_msgs_per_s: float
    publish_ack_per_s: float
    complete: bool


def stages_alone(pipe: Pipeline, count: int) -> StageFigures:
    """Bridge, decode and sink one after the other, the others paused."""
    pipe.truncate()
    raw0, decoded0 = pipe.end_offset(RAW_TOPIC), pipe.end_offset(DECODED_TOPIC)
    connector, sinks = pipe.pids("connector"), pipe.pids("sink")
    if not connector or not sinks:
        raise BenchError("connector or sink replica processes not found")
    try:
        _signal(connector, signal.SIGSTOP)
        published = pipe.publish([pipe.plan(count, None, tag="stages")])
        bridge = watch(
            lambda: pipe.end_offset(RAW_TOPIC), raw0 + count, STOP_LIMIT_S, published.first_publish
        )
        try:
            _signal(sinks, signal.SIGSTOP)
            _signal(connector, signal.SIGCONT)
            decode = watch(
                lambda: pipe.end_offset(DECODED_TOPIC),
                decoded0 + published.rows,
                STOP_LIMIT_S,
                time.time(),
            )
        finally:
            _signal(sinks, signal.SIGCONT)
    finally:
        _signal(connector, signal.SIGCONT)
    sink = pipe.wait_rows(published.rows, 120.0, time.time())
    rows_per_message = published.rows / published.sent
    bridge_done = bridge.done_at or time.time()
    return StageFigures(
        messages=published.sent,
        rows=published.rows,
        bridge_msgs_per_s=rate(count, bridge_done - published.first_publish),
        decode_msgs_per_s=decode.steady_rate() / rows_per_message,
        decode_rows_per_s=decode.steady_rate(),
        sink_rows_per_s=sink.steady_rate(),
        sink_msgs_per_s=sink.steady_rate() / rows_per_message,
        publish_ack_per_s=rate(published.sent, published.ack_seconds),
        complete=bool(bridge.done_at and decode.done_at and sink.done_at),
    )


@dataclass
class SustainedFigures:
    """End to end, flat out: ``messages`` from the first publish to the last committed row."""

    messages: int
    rows: int
    seconds: float
    msgs_per_s: float
    rows_per_s: float
    publish_ack_per_s: float
    max_lag: dict[str, int]
    stored_rows: int
    cpu_seconds: dict[str, float]
    cpu_ms_per_message: dict[str, float]


def sustained(pipe: Pipeline, count: int) -> SustainedFigures:
    """Flat out; besides the rate, the CPU each process spent per message (where time goes)."""
    pipe.truncate()
    cpu = CpuByGroup(pipe.stack.pid_path).start()
    with LagWatch(pipe.bootstrap) as lags:
        published = pipe.publish([pipe.plan(count, None, tag="sustained")])
        done = pipe.wait_rows(published.rows, 600.0, published.first_publish)
    cpu_seconds = cpu.stop()
    if done.done_at is None:
        raise BenchError(f"sustained run: {done.final_value} of {published.rows} rows stored")
    seconds = pipe.last_ingested() - published.first_publish
    return SustainedFigures(
        messages=published.sent,
        rows=published.rows,
        seconds=seconds,
        msgs_per_s=rate(published.sent, seconds),
        rows_per_s=rate(published.rows, seconds),
        publish_ack_per_s=rate(published.sent, published.ack_seconds),
        max_lag=dict(lags.max_lag),
        stored_rows=done.final_value,
        cpu_seconds={k: round(v, 2) for k, v in cpu_seconds.items()},
        cpu_ms_per_message={k: round(v * 1000 / published.sent, 4) for k, v in cpu_seconds.items()},
    )


@dataclass
class LatencyFigures:
    """Publish -> commit latency of every message published at ``rate_per_s``."""

    rate_per_s: float
    seconds: float
    latency: LatencySummary
    achieved_per_s: float


def latency(pipe: Pipeline, rate_per_s: float, seconds: float) -> LatencyFigures:
    pipe.truncate()
    count = max(1, int(rate_per_s * seconds))
    published = pipe.publish([pipe.plan(count, rate_per_s, tag="latency")])
    done = pipe.wait_rows(published.rows, 300.0, published.first_publish)
    if done.done_at is None:
        raise BenchError(f"latency run: {done.final_value} of {published.rows} rows stored")
    return LatencyFigures(
        rate_per_s=rate_per_s,
        seconds=seconds,
        latency=summarize_latency(pipe.latencies()),
        achieved_per_s=rate(published.sent, published.publish_seconds),
    )


@dataclass
class BurstFigures:
    """Memory of every process before, during and after a burst of ``factor`` x the steady rate."""

    steady_per_s: float
    burst_per_s: float
    burst_seconds: float
    achieved_burst_per_s: float
    drained_after_s: float | None
    rows_expected: int
    rows_stored: int
    memory: dict[str, dict[str, Any]]


def burst(
    pipe: Pipeline,
    steady_per_s: float,
    factor: float,
    before_s: float,
    burst_s: float,
    drained_below_s: float,
) -> BurstFigures:
    """Steady traffic throughout; on top of it, for ``burst_s``, (factor - 1) x steady more.

    Before = the steady seconds before the burst; during = from the burst until the pipeline has
    caught up (rows committed in the last second are again less than ``drained_below_s`` old);
    after = the steady seconds after that.
    """
    pipe.truncate()
    steady_fleet, burst_fleet = pipe.fleet.split(2)
    # Drain time at the steady rate: the backlog is about (factor - 2) x steady x burst_s when
    # the pipeline's maximum is twice the steady rate; the after window follows it.
    after_s = max(10.0, before_s)
    drain_s = (factor - 1.0) * burst_s * 1.5
    total_s = before_s + burst_s + drain_s + after_s
    sampler = MemorySampler(pipe.stack.pid_path).start()
    start = time.time() + 2.0
    burst_start = start + before_s
    plans = [
        pipe.plan(int(steady_per_s * total_s), steady_per_s, steady_fleet, "steady", start),
        pipe.plan(
            int(steady_per_s * (factor - 1) * burst_s),
            steady_per_s * (factor - 1),
            burst_fleet,
            "burst",
            burst_start,
        ),
    ]
    futures = [pipe.pool.submit(plan) for plan in plans]
    drained_at: float | None = None
    while not all(f.done() for f in futures):
        now = time.time()
        if drained_at is None and now > burst_start + burst_s:
            recent = pipe.recent_latency()
            if recent is not None and recent < drained_below_s:
                drained_at = now
        time.sleep(0.5)
    results = [f.result() for f in futures]
    published = combined(results)
    done = pipe.wait_rows(published.rows, 300.0, published.first_publish)
    sampler.stop()
    after_start = (drained_at or time.time()) + 2.0
    memory: dict[str, dict[str, Any]] = {}
    for name, series in sorted(sampler.series.items()):
        level = memory_level(series.rss(), burst_start, burst_start + burst_s, after_start)
        pss = memory_level(series.pss(), burst_start, burst_start + burst_s, after_start)
        memory[name] = {
            "rss_kib": _level(level),
            "pss_kib": _level(pss),
            "peak_rss_kib": max((kib for _, kib in series.rss()), default=0.0),
            "samples": len(series.samples),
        }
    return BurstFigures(
        steady_per_s=steady_per_s,
        burst_per_s=steady_per_s * factor,
        burst_seconds=burst_s,
        achieved_burst_per_s=steady_per_s + rate(results[1].sent, results[1].publish_seconds),
        drained_after_s=None if drained_at is None else drained_at - (burst_start + burst_s),
        rows_expected=published.rows,
        rows_stored=done.final_value,
        memory=memory,
    )


def _level(level: MemoryLevel) -> dict[str, Any]:
    return {
        "before": round(level.before),
        "peak": round(level.peak),
        "after": round(level.after),
        "growth": None if level.growth is None else round(level.growth, 4),
        "flat": level.flat(),
    }
