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
import json
import logging
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg2
from kafka import KafkaConsumer, TopicPartition

from f2lib.contracts.functions import consumer_group
from f2lib.contracts.records import DECODED_TOPIC, RAW_TOPIC
from f2lib.errors import BenchError
from f2lib.kafka import kafka_admin_factory
from f2lib.models import parse_timestamp
from infra.local.stack import MONITOR_USER, TIMESERIES_DB, LocalStack
from infra.services.autoscaler.lag import KafkaLagReader
from infra.tools.bench.processes import CpuByGroup, MemorySampler, MemorySeries, stack_groups
from infra.tools.bench.profiles import Profiler
from infra.tools.bench.publisher import PublisherPool, PublishPlan, PublishResult, combined
from infra.tools.bench.stats import (
    LatencySummary,
    MemoryLevel,
    memory_level,
    rate,
    summarize_latency,
)
from infra.tools.bench.workload import Fleet

logger = logging.getLogger(__name__)

LAG_GROUPS = {consumer_group("decode"): [RAW_TOPIC], consumer_group("sink"): [DECODED_TOPIC]}
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
        self.bootstrap = stack.kafka_bootstrap
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

    def commits(self) -> list[tuple[str, float, float]]:
        """(topic, publish time, last commit) of every stored message, epoch seconds."""
        with self._db.cursor() as cur:
            cur.execute(
                "SELECT topic, extract(epoch FROM time), extract(epoch FROM max(ingested_at))"
                " FROM iot_measurements GROUP BY device_id, topic, time"
            )
            return [(str(t), float(p), float(c)) for t, p, c in cur.fetchall()]

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        return {tp: int(o) for tp, o in self._offsets.end_offsets(self._partitions[topic]).items()}

    def read_records(self, start: dict[TopicPartition, int]) -> list[Any]:
        """The records from ``start`` to the current end of those partitions."""
        ends = self._offsets.end_offsets(list(start))
        reader = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            client_id="f2-bench-reader",
        )  # fmt: skip
        records: list[Any] = []
        try:
            reader.assign(list(start))
            for tp, offset in start.items():
                reader.seek(tp, offset)
            remaining = {tp for tp in start if ends[tp] > start[tp]}
            deadline = time.monotonic() + 60
            while remaining and time.monotonic() < deadline:
                for tp, batch in reader.poll(timeout_ms=500, max_records=5000).items():
                    records.extend(r for r in batch if r.offset < ends[tp])
                    if batch and batch[-1].offset >= ends[tp] - 1:
                        remaining.discard(tp)
        finally:
            reader.close()
        return records

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
    """Publish -> commit latency of every message published at ``rate_per_s``, and where it went.

    Per stage, per message: ``mqtt`` publish -> the bridge received it (``received_at`` of the
    raw record); ``bridge`` -> its raw record was produced (the Kafka record's timestamp, set at
    ``send``; the broker's acknowledgement follows within the bridge's linger); ``decode`` ->
    its measurements were produced by decode (connector fetch and linger, gateway, decoding);
    ``sink`` -> the sink's transaction started (``ingested_at``; connector, gateway, sink).
    Kafka timestamps have millisecond resolution.
    """

    rate_per_s: float
    seconds: float
    latency: LatencySummary
    achieved_per_s: float
    stages: dict[str, LatencySummary]


def latency(pipe: Pipeline, rate_per_s: float, seconds: float) -> LatencyFigures:
    pipe.truncate()
    raw_from, decoded_from = pipe.end_offsets(RAW_TOPIC), pipe.end_offsets(DECODED_TOPIC)
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
        stages=stage_latencies(pipe, raw_from, decoded_from),
    )


def _micros(value: Any) -> int:
    """A timestamp (text in any of the pipeline's formats, or epoch seconds) in microseconds."""
    if isinstance(value, int | float):
        return round(value * 1_000_000)
    return round(parse_timestamp(value).timestamp() * 1_000_000)


def stage_latencies(
    pipe: Pipeline,
    raw_from: dict[TopicPartition, int],
    decoded_from: dict[TopicPartition, int],
) -> dict[str, LatencySummary]:
    """Each stage's share of the latency, from the records the phase left in Kafka."""
    raw: dict[tuple[str, int], tuple[float, float]] = {}
    for record in pipe.read_records(raw_from):
        value = json.loads(record.value)
        payload = json.loads(value["payload"])
        key = (value["topic"], _micros(payload["timestamp"]))
        raw[key] = (_micros(value["received_at"]) / 1e6, record.timestamp / 1000)
    decoded: dict[tuple[str, int], float] = {}
    for record in pipe.read_records(decoded_from):
        value = json.loads(record.value)
        key = (value["topic"], _micros(value["time"]))
        decoded[key] = max(decoded.get(key, 0.0), record.timestamp / 1000)
    parts: dict[str, list[float]] = {"mqtt": [], "bridge": [], "decode": [], "sink": []}
    for topic, published, committed in pipe.commits():
        key = (topic, _micros(published))
        if key not in raw or key not in decoded:
            continue
        received, produced = raw[key]
        parts["mqtt"].append(received - published)
        parts["bridge"].append(produced - received)
        parts["decode"].append(decoded[key] - produced)
        parts["sink"].append(committed - decoded[key])
    return {name: summarize_latency(values) for name, values in parts.items() if values}


@dataclass
class BurstFigures:
    """Memory of every process before, during and after a burst of ``factor`` x the steady rate.

    The burst sends (factor - 1) x steady x ``burst_seconds`` messages on top of the steady
    traffic, at (factor - 1) x steady per second or as fast as one publisher gets them out on
    this machine (``achieved_burst_per_s``, ``burst_sent_seconds``).
    """

    steady_per_s: float
    burst_per_s: float
    burst_seconds: float
    achieved_burst_per_s: float
    burst_sent_seconds: float
    burst_messages: int
    drained_after_s: float | None
    rows_expected: int
    rows_stored: int
    memory: dict[str, dict[str, Any]]
    series: dict[str, list[list[float]]]


def burst(
    pipe: Pipeline,
    steady_per_s: float,
    factor: float,
    before_s: float,
    burst_s: float,
    drained_below_s: float,
    after_s: float = 10.0,
    drain_limit_s: float = 240.0,
) -> BurstFigures:
    """Steady traffic throughout; on top of it a burst; memory sampled four times a second.

    Before = the steady seconds before the burst; during = from the burst's first message until
    the pipeline has caught up (the rows committed in the last second are again less than
    ``drained_below_s`` old); after = the ``after_s`` steady seconds that follow.
    """
    pipe.truncate()
    steady_fleet, burst_fleet = pipe.fleet.split(2)
    stop_file = Path(tempfile.mkdtemp(prefix="f2-bench-burst-")) / "stop"
    sampler = MemorySampler(pipe.stack.pid_path).start()
    start = time.time() + 2.0
    burst_start = start + before_s
    longest = before_s + burst_s + drain_limit_s + after_s + 60.0
    burst_count = int(steady_per_s * (factor - 1) * burst_s)
    plans = [
        replace(
            pipe.plan(int(steady_per_s * longest), steady_per_s, steady_fleet, "steady", start),
            stop_file=str(stop_file),
        ),
        pipe.plan(burst_count, steady_per_s * (factor - 1), burst_fleet, "burst", burst_start),
    ]
    steady, burst_future = (pipe.pool.submit(plan) for plan in plans)
    try:
        burst_result = burst_future.result()
        drained_at: float | None = None
        deadline = time.time() + drain_limit_s
        while time.time() < deadline:
            recent = pipe.recent_latency()
            if recent is not None and recent < drained_below_s:
                drained_at = time.time()
                break
            time.sleep(0.5)
        after_start = (drained_at or time.time()) + 2.0
        time.sleep(max(0.0, after_start + after_s - time.time()))
    finally:
        stop_file.touch()
    published = combined([steady.result(), burst_result])
    stop_file.unlink(missing_ok=True)
    stop_file.parent.rmdir()
    done = pipe.wait_rows(published.rows, 300.0, published.first_publish)
    sampler.stop()
    end = time.time()
    memory: dict[str, dict[str, Any]] = {}
    series: dict[str, list[list[float]]] = {}
    for name, found in sorted(sampler.series.items()):
        memory[name] = {
            kind: _level(memory_level(values, burst_start, burst_result.last_publish, after_start))
            for kind, values in (("rss_kib", found.rss()), ("anon_kib", found.anon()),
                                 ("pss_kib", found.pss()))
        }  # fmt: skip
        memory[name]["peak_rss_kib"] = max((kib for _, kib in found.rss()), default=0.0)
        series[name] = _per_second(found, burst_start, end)
    return BurstFigures(
        steady_per_s=steady_per_s,
        burst_per_s=steady_per_s * factor,
        burst_seconds=burst_s,
        achieved_burst_per_s=steady_per_s + rate(burst_result.sent, burst_result.publish_seconds),
        burst_sent_seconds=burst_result.publish_seconds,
        burst_messages=burst_result.sent,
        drained_after_s=None if drained_at is None else drained_at - burst_result.last_publish,
        rows_expected=published.rows,
        rows_stored=done.final_value,
        memory=memory,
        series=series,
    )


def _per_second(found: MemorySeries, origin: float, end: float) -> list[list[float]]:
    """[seconds from the burst, RSS MiB, anonymous MiB] once a second (for plots and docs)."""
    out: list[list[float]] = []
    next_at = -math.inf
    for at, rss, anon, _, _ in found.samples:
        if at >= next_at and at <= end:
            out.append([round(at - origin, 1), round(rss / 1024, 1), round(anon / 1024, 1)])
            next_at = at + 1.0
    return out


def _level(level: MemoryLevel) -> dict[str, Any]:
    return {
        "before": round(level.before),
        "peak": round(level.peak),
        "after": round(level.after),
        "growth": None if level.growth is None else round(level.growth, 4),
        "flat": level.flat(),
    }


def profiled(pipe: Pipeline, count: int, expected_per_s: float, folder: Path) -> dict[str, Any]:
    """The sustained run once more with py-spy on every Python process (flame graphs in
    ``folder``); kept apart from the measured runs, since sampling costs the processes CPU."""
    pipe.truncate()
    seconds = max(5.0, 1.3 * count / max(expected_per_s, 1.0))
    groups = stack_groups(pipe.stack.pid_path)
    profiler = Profiler(folder, seconds, groups).start()
    published = pipe.publish([pipe.plan(count, None, tag="profiled")])
    pipe.wait_rows(published.rows, 600.0, published.first_publish)
    return profiler.stop()


@dataclass
class DrainFigures:
    """A backlog of ``messages`` queued in Mosquitto while the bridges were paused, then
    drained end to end: from the resume to the last committed row, and the CPU meanwhile."""

    messages: int
    rows: int
    seconds: float
    msgs_per_s: float
    bridges: int
    stored_rows: int
    cpu_seconds: dict[str, float]
    cpu_ms_per_message: dict[str, float]
    cpu_ms_per_message_total: float
    replicas: dict[str, int] = field(default_factory=dict)


def drain(pipe: Pipeline, count: int, publishers: int = 2) -> DrainFigures:
    """The pipeline's figure by the method of the peer's (``peer.telegraf_drain``): the
    publishers' own speed is out of the measurement, for both."""
    pipe.truncate()
    bridges = pipe.pids("bridge")
    if not bridges:
        raise BenchError("no bridge process found")
    plans = [pipe.plan(count // publishers + (1 if i < count % publishers else 0), None, part,
                       tag=f"drain{i}")
             for i, part in enumerate(pipe.fleet.split(publishers))]  # fmt: skip
    _signal(bridges, signal.SIGSTOP)
    try:
        published = pipe.publish(plans)
        cpu = CpuByGroup(pipe.stack.pid_path).start()
        resumed = time.time()
    finally:
        _signal(bridges, signal.SIGCONT)
    done = pipe.wait_rows(published.rows, 600.0, resumed)
    cpu_seconds = cpu.stop()
    if done.done_at is None:
        raise BenchError(f"drain: {done.final_value} of {published.rows} rows stored")
    seconds = pipe.last_ingested() - resumed
    per_message = {k: round(v * 1000 / published.sent, 4) for k, v in cpu_seconds.items()}
    return DrainFigures(
        messages=published.sent,
        rows=published.rows,
        seconds=seconds,
        msgs_per_s=rate(published.sent, seconds),
        bridges=len(bridges),
        stored_rows=done.final_value,
        cpu_seconds={k: round(v, 2) for k, v in cpu_seconds.items()},
        cpu_ms_per_message=per_message,
        cpu_ms_per_message_total=round(sum(per_message.values()), 4),
    )
