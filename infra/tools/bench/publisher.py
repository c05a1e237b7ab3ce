"""A QoS 1 MQTT publisher for the benchmark, run in its own process: paced, or flat out.

Each message's payload timestamp is taken when it is generated, just before ``publish``: the
pipeline's latency is measured from it. The publisher waits for every PUBACK (MQTT v5, so a
refusal is visible as a failure reason) and reports wall-clock times (``time.time()``), which
the harness compares with PostgreSQL's timestamps on the same machine.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from pydantic import SecretStr

from f2lib.errors import BenchError
from f2lib.mqtt import paho_client
from infra.tools.bench.workload import Fleet, messages

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishPlan:
    """What one publisher process sends, where, and how fast (``rate`` None: flat out)."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    fleet: Fleet
    count: int
    rate: float | None = None
    seed: int = 1
    client_id: str = "f2-bench-publisher"
    max_inflight: int = 1000
    topic_prefix: str | None = None
    start_at: float | None = None  # wall time to begin (publishers started together)
    stop_file: str | None = None  # stop early once this file exists (checked twice a second)
    ack_timeout_s: float = 180.0


@dataclass
class PublishResult:
    """What a publisher did; times are wall-clock seconds (``time.time()``)."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    rows: int = 0
    first_publish: float = 0.0
    last_publish: float = 0.0
    last_ack: float = 0.0

    @property
    def publish_seconds(self) -> float:
        return max(0.0, self.last_publish - self.first_publish)

    @property
    def ack_seconds(self) -> float:
        return max(0.0, self.last_ack - self.first_publish)


def publish(plan: PublishPlan) -> PublishResult:
    """Connect, send ``plan.count`` messages, wait for their acknowledgements, disconnect."""
    result = PublishResult()
    done = threading.Condition()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with done:
            if reason.is_failure:
                result.failed += 1
            else:
                result.acked += 1
            result.last_ack = time.time()
            done.notify_all()

    client = paho_client(
        plan.client_id,
        username=plan.username,
        password=SecretStr(plan.password),
        max_inflight=plan.max_inflight,
    )
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(plan.host, plan.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(15) or refused:
            raise BenchError(f"publisher {plan.client_id} not connected: {refused or 'timeout'}")
        if plan.start_at is not None:
            time.sleep(max(0.0, plan.start_at - time.time()))
        stream = messages(plan.fleet, plan.seed, topic_prefix=plan.topic_prefix)
        interval = 1.0 / plan.rate if plan.rate else 0.0
        started = time.monotonic()
        next_check = started + 0.5
        for index, message in enumerate(itertools.islice(stream, plan.count)):
            if plan.stop_file is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.5
                if os.path.exists(plan.stop_file):
                    break
            if interval:
                delay = started + index * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            now = time.time()
            info = client.publish(message.topic, message.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise BenchError(f"publish refused by the client: {info.rc}")
            if result.sent == 0:
                result.first_publish = now
            result.sent += 1
            result.rows += message.measurements
        result.last_publish = time.time()
        deadline = time.monotonic() + plan.ack_timeout_s
        with done:
            while result.acked + result.failed < result.sent and time.monotonic() < deadline:
                done.wait(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    return result


class PublisherPool:
    """Publisher processes (spawned, so paho's threads share no interpreter with the harness)."""

    def __init__(self, processes: int = 2) -> None:
        self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))

    def submit(self, plan: PublishPlan) -> Future[PublishResult]:
        return self._executor.submit(publish, plan)

    def run(self, plans: list[PublishPlan]) -> list[PublishResult]:
        futures = [self.submit(plan) for plan in plans]
        return [future.result() for future in futures]

    def warm(self) -> None:
        """Start the worker processes now, not inside a timed phase."""
        for future in [self._executor.submit(time.time) for _ in range(4)]:
            future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def combined(results: list[PublishResult]) -> PublishResult:
    """The publishers of one phase as one: counts summed, first and last times over all."""
    total = PublishResult()
    for one in results:
        total.sent += one.sent
        total.acked += one.acked
        total.failed += one.failed
        total.rows += one.rows
    started = [r.first_publish for r in results if r.sent]
    total.first_publish = min(started) if started else 0.0
    total.last_publish = max((r.last_publish for r in results), default=0.0)
    total.last_ack = max((r.last_ack for r in results), default=0.0)
    return total
