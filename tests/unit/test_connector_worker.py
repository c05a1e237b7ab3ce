"""The function consumer's commit, concurrency and rebalance rules, with a fake Kafka consumer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.future import Future

from f2lib.backoff import Backoff
from f2lib.kafka.confluent import FatalConsumerError
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import BatchDelivery
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.targets import FunctionTarget
from infra.services.connector.worker import FunctionConsumer
from infra.services.kit.openfaas import Invocation
from tests.waiting import wait_for

TOPIC = "raw_iot_data"
TPS = [TopicPartition(TOPIC, p) for p in range(3)]


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FakeLoop:
    """kafka-python's IO loop as a rebalance listener reaches it (``_client._net.sleep``)."""

    def __init__(self) -> None:
        self.sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        time.sleep(seconds)  # the loop's pause (heartbeats would go on meanwhile)


class FakeConsumer:
    """Serves appended records per partition and records commits, pauses and seeks."""

    def __init__(self) -> None:
        self.log: dict[TopicPartition, list[Rec]] = {tp: [] for tp in TPS}
        self.position = {tp: 0 for tp in TPS}
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()
        self.listener: Any = None
        self.assigned = False
        self.revoke_requested = threading.Event()
        self.polls = 0
        self.loop = FakeLoop()
        self._client = SimpleNamespace(_net=self.loop)
        self.closed = False
        self.lock = threading.Lock()
        self.io_thread: threading.Thread | None = None
        self.rejoined_at: dict[TopicPartition, int] = {}

    def append(self, partition: int, count: int) -> None:
        tp = TPS[partition]
        with self.lock:
            start = len(self.log[tp])
            for offset in range(start, start + count):
                value = json.dumps({"n": offset}).encode()
                self.log[tp].append(Rec(TOPIC, partition, offset, b"f2-%012d" % partition, value))

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == [TOPIC]
        self.listener = listener

    def poll(
        self, timeout_ms: int, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        self.polls += 1
        if not self.assigned:
            self.assigned = True
            self.on_io_thread("on_partitions_assigned", set(TPS))
        if self.revoke_requested.is_set():
            self.revoke_requested.clear()
            self.on_io_thread("on_partitions_revoked", set(TPS))
            self.position = {tp: self.committed_offsets.get(tp, 0) for tp in TPS}
            self.rejoined_at = dict(self.position)
            self.on_io_thread("on_partitions_assigned", set(TPS))
        out = {}
        with self.lock:
            for tp in TPS:
                if tp in self.paused:
                    continue
                chunk = self.log[tp][self.position[tp] : self.position[tp] + 7]
                if chunk:
                    out[tp] = chunk
                    self.position[tp] += len(chunk)
        if not out:
            time.sleep(timeout_ms / 1000)
        return out

    def on_io_thread(self, method: str, tps: set[TopicPartition]) -> None:
        """As kafka-python 3.0.12 does: the listener runs on the client's IO thread (awaited
        when async) while the caller of poll() waits for it."""
        failures: list[BaseException] = []

        def run() -> None:
            self.io_thread = threading.current_thread()
            try:
                result = getattr(self.listener, method)(tps)
                if asyncio.iscoroutine(result):
                    asyncio.run(result)
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run, name="fake-kafka-io")
        thread.start()
        thread.join()
        if failures:
            raise KafkaError(f"User rebalance callback throws an error: {failures[0]!r}")

    def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        if threading.current_thread() is self.io_thread:
            raise RuntimeError("Cannot block on net.run() from the IO thread itself.")
        self._record_commit(offsets)

    def commit_async(self, offsets: Mapping[TopicPartition, Any]) -> Future:
        self._record_commit(offsets)
        return Future().success(None)

    def _record_commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.commits.append(plain)
        self.committed_offsets.update(plain)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log[tp]) for tp in tps}

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


class GatedFunction:
    """Answers each call once the test lets it (``gate``), recording order and concurrency."""

    def __init__(self, statuses: Callable[[list[int]], int] = lambda offsets: 200) -> None:
        self.statuses = statuses
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.delivered: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self.calls = 0

    def invoke(self, function: str, body: bytes, headers: Mapping[str, str]) -> Invocation:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            assert self.gate.wait(10)
            items = json.loads(body)
            offsets = [item["offset"] for item in items]
            status = self.statuses(offsets)
            if status == 200:
                with self.lock:
                    self.delivered[items[0]["partition"]].extend(offsets)
            return Invocation(status, "ok" if status == 200 else "no")
        finally:
            with self.lock:
                self.active -= 1


class NoLetters:
    def write(self, letters: Any) -> None:
        raise AssertionError("no dead letters expected")


def make(
    fn: GatedFunction, replicas: int = 3, **settings: Any
) -> tuple[FunctionConsumer, FakeConsumer, ConnectorMetrics]:
    config = ConnectorConfig(
        **{
            "batch_max_records": 10,
            "linger_ms": 5,
            "concurrency_per_replica": 1,
            "lag_interval_s": 0.05,
            "revoke_timeout_s": 5,
            **settings,
        }
    )
    metrics = ConnectorMetrics()
    fake = FakeConsumer()
    delivery = BatchDelivery(
        "decode", fn, NoLetters(), metrics, Backoff(base_s=0.01, cap_s=0.02, jitter=0)
    )
    consumer = FunctionConsumer(
        FunctionTarget("decode", (TOPIC,), replicas),
        config,
        delivery,
        metrics,
        lambda group, client: fake,
    )
    assert consumer.group_id == "f2-connector-decode"
    return consumer, fake, metrics


def loop_turns(fake: FakeConsumer, turns: int = 2) -> None:
    """Wait until the consumer thread has gone round its loop ``turns`` more times: each turn
    takes completions and commits what was delivered, then polls (at least 10 ms while a batch
    is in flight), then dispatches what is ready."""
    polled = fake.polls
    wait_for(lambda: fake.polls >= polled + turns, message="the consumer loop stalled")


@pytest.fixture
def running() -> Any:
    started: list[FunctionConsumer] = []
    yield started
    for consumer in started:
        consumer.stop(timeout=10)


def test_offsets__are_committed_only_after_the_function_answered_2xx(running: Any) -> None:
    fn = GatedFunction()
    fn.gate.clear()
    consumer, fake, _ = make(fn)
    fake.append(0, 4)
    running.append(consumer.start())
    wait_for(lambda: fn.active == 1)
    loop_turns(fake)  # a commit owed to a batch not yet answered would have been made by now
    assert fake.commits == []
    fn.gate.set()
    wait_for(lambda: fake.committed_offsets.get(TPS[0]) == 4)
    assert fn.delivered[0] == [0, 1, 2, 3]


def test_5xx__is_retried_and_nothing_is_committed_until_it_passes(running: Any) -> None:
    answers = iter([503, 502, 500])
    fn = GatedFunction(statuses=lambda offsets: next(answers, 200))
    consumer, fake, metrics = make(fn)
    fake.append(1, 3)
    running.append(consumer.start())
    wait_for(lambda: fake.committed_offsets.get(TPS[1]) == 3)
    assert fn.calls == 4
    assert fake.commits == [{TPS[1]: 3}]
    sample = metrics.registry.get_sample_value
    assert sample("f2_connector_invocations_total", {"function": "decode", "status": "503"}) == 1


def test_partitions__are_fed_concurrently_up_to_the_replica_count(running: Any) -> None:
    fn = GatedFunction()
    fn.gate.clear()
    consumer, fake, metrics = make(fn, replicas=1)
    for partition in range(3):
        fake.append(partition, 5)
    running.append(consumer.start())
    wait_for(lambda: fn.active == 1)
    loop_turns(fake, 3)  # the other partitions' batches were ready (linger 5 ms) and not sent
    in_flight = metrics.registry.get_sample_value(
        "f2_connector_in_flight_batches", {"function": "decode"}
    )
    assert in_flight == 1
    assert fn.max_active == 1

    consumer.update(FunctionTarget("decode", (TOPIC,), 3))
    assert (
        metrics.registry.get_sample_value("f2_connector_concurrency", {"function": "decode"}) == 3
    )
    wait_for(lambda: fn.active == 3)
    fn.gate.set()
    wait_for(lambda: all(fake.committed_offsets.get(tp) == 5 for tp in TPS))
    assert fn.max_active == 3


def test_each_partition__is_delivered_in_offset_order_one_batch_at_a_time(running: Any) -> None:
    fn = GatedFunction()
    consumer, fake, _ = make(fn, replicas=3)
    running.append(consumer.start())
    for _ in range(20):
        for partition in range(3):
            fake.append(partition, 7)
        time.sleep(0.005)
    wait_for(lambda: all(fake.committed_offsets.get(tp) == 140 for tp in TPS))
    for partition in range(3):
        assert fn.delivered[partition] == list(range(140))
    assert fn.max_active <= 3


def test_revoke__waits_for_the_batch_in_flight_and_commits_it(running: Any) -> None:
    fn = GatedFunction()
    fn.gate.clear()
    consumer, fake, _ = make(fn)
    fake.append(2, 3)
    running.append(consumer.start())
    wait_for(lambda: fn.active == 1)
    fake.revoke_requested.set()
    # The revoke waits for the batch in flight (or, wrongly, has let the rejoin happen)
    wait_for(lambda: fake.loop.sleeps > 0 or fake.rejoined_at)
    fn.gate.set()
    wait_for(lambda: fake.committed_offsets.get(TPS[2]) == 3)
    fake.append(2, 1)  # a sentinel after the batch: a repeat of the batch would come before it
    wait_for(lambda: fake.committed_offsets.get(TPS[2]) == 4)
    assert fn.delivered[2] == [0, 1, 2, 3], "the batch must not be delivered again after revoke"
    assert fake.rejoined_at[TPS[2]] == 3, "the revoke must commit the batch before the rejoin"


def races(metrics: ConnectorMetrics) -> float:
    value = metrics.registry.get_sample_value(
        "f2_connector_rebalance_listener_races_total", {"function": "decode"}
    )
    return value or 0.0


def test_rebalance_listeners__run_while_the_consumer_thread_waits_in_poll(running: Any) -> None:
    fn = GatedFunction()
    consumer, fake, metrics = make(fn)
    fake.append(1, 3)
    running.append(consumer.start())
    wait_for(lambda: fn.delivered.get(1) == [0, 1, 2])
    fake.revoke_requested.set()
    fake.append(1, 1)
    wait_for(lambda: fake.committed_offsets.get(TPS[1]) == 4)
    assert races(metrics) == 0


def test_rebalance_listener__called_outside_poll_is_counted_as_a_race(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The guard of the no-lock design: should kafka-python ever run a listener while the
    consumer thread is not waiting in poll()/close(), it shows (metric and error log)."""
    consumer, _, metrics = make(GatedFunction())
    consumer.partitions_assigned({TPS[0]})
    assert races(metrics) == 1
    assert "was not waiting in poll() or close()" in caplog.text


def test_stop__abandons_a_failing_batch_uncommitted_after_the_revoke_timeout(
    running: Any,
) -> None:
    fn = GatedFunction(statuses=lambda offsets: 503)
    consumer, fake, _ = make(fn, revoke_timeout_s=0.2)
    fake.append(0, 2)
    consumer.start()
    wait_for(lambda: fn.calls >= 2)
    consumer.stop(timeout=10)
    assert not consumer.alive()
    assert fake.commits == []
    assert fake.closed


def test_lag__is_exported_per_partition_and_falls_to_zero_when_committed(running: Any) -> None:
    fn = GatedFunction()
    fn.gate.clear()
    consumer, fake, metrics = make(fn)
    fake.append(0, 6)
    running.append(consumer.start())

    def lag(partition: int) -> float | None:
        labels = {"function": "decode", "topic": TOPIC, "partition": str(partition)}
        return metrics.registry.get_sample_value("f2_connector_consumer_lag", labels)

    wait_for(lambda: lag(0) == 6)
    assert lag(1) == 0
    fn.gate.set()
    wait_for(lambda: lag(0) == 0)


class ParkingConsumer(FakeConsumer):
    """kafka-python 3.0.12 as reported: a partition paused while the client holds fetched
    records for it gets nothing after resume() (its records stay parked), until it is sought."""

    def __init__(self) -> None:
        super().__init__()
        self.parked: set[TopicPartition] = set()
        self.seeks: list[tuple[TopicPartition, int]] = []

    def pause(self, *tps: TopicPartition) -> None:
        with self.lock:
            self.parked.update(tp for tp in tps if len(self.log[tp]) > self.position[tp])
        super().pause(*tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.parked.discard(tp)
        super().seek(tp, offset)

    def poll(
        self, timeout_ms: int, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        out = super().poll(timeout_ms, max_records)
        for tp in self.parked & set(out):
            self.position[tp] -= len(out.pop(tp))  # held back, not handed out
        return out


def make_parking(fn: GatedFunction, **settings: Any) -> tuple[FunctionConsumer, ParkingConsumer]:
    consumer, _, _ = make(fn, **settings)
    fake = ParkingConsumer()
    consumer._factory = lambda group, client: fake
    return consumer, fake


def test_flow_control__a_paused_partition_is_refetched_from_its_next_offset_on_resume(
    running: Any,
) -> None:
    fn = GatedFunction()
    fn.gate.clear()
    consumer, fake = make_parking(fn)
    fake.append(0, 100)
    running.append(consumer.start())
    wait_for(lambda: TPS[0] in fake.paused and TPS[0] in fake.parked)
    fn.gate.set()

    wait_for(lambda: fake.committed_offsets.get(TPS[0]) == 100)
    assert fn.delivered[0] == list(range(100)), "each record once, in order"
    assert fake.seeks and all(tp == TPS[0] for tp, _ in fake.seeks)


def test_flow_control__a_silent_partition_with_records_left_is_sought_again(
    running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("infra.services.connector.worker.REFETCH_AFTER_S", 0.3, raising=False)
    fn = GatedFunction()
    consumer, fake = make_parking(fn)
    fake.append(1, 5)
    running.append(consumer.start())
    wait_for(lambda: fake.committed_offsets.get(TPS[1]) == 5)
    fake.parked.add(TPS[1])  # the client stops handing out the partition, unpaused
    fake.append(1, 5)

    wait_for(lambda: fake.committed_offsets.get(TPS[1]) == 10)
    assert fake.seeks == [(TPS[1], 5)]
    assert fn.delivered[1] == list(range(10))


@pytest.mark.parametrize("interval_ms", [0, 300])
def test_commits__follow_the_commit_interval_and_reach_every_delivered_offset(
    running: Any, interval_ms: int
) -> None:
    fn = GatedFunction()
    consumer, fake, _ = make(fn, commit_interval_ms=interval_ms, batch_max_records=2, linger_ms=0)
    running.append(consumer.start())
    started = time.monotonic()
    for _ in range(20):  # small batches complete one after another for about a second
        fake.append(0, 2)
        time.sleep(0.05)
    wait_for(lambda: fake.committed_offsets.get(TPS[0]) == 40)
    elapsed = time.monotonic() - started
    assert fn.delivered[0] == list(range(40))
    assert fn.calls >= 15, "the test needs many small batches"
    if interval_ms == 0:
        assert len(fake.commits) >= fn.calls, "a commit after every batch"
    else:
        assert len(fake.commits) <= elapsed / (interval_ms / 1000) + 2, fake.commits


class FencedConsumer(FakeConsumer):
    """A consumer that librdkafka declares unusable (a fatal error) after serving once."""

    def __init__(self, shared_log: dict[TopicPartition, list[Rec]]) -> None:
        super().__init__()
        self.log = shared_log

    def poll(
        self, timeout_ms: int, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        if self.polls >= 3:
            self.polls += 1
            raise FatalConsumerError("Static consumer fenced by other consumer")
        return super().poll(timeout_ms, max_records)


def test_a_consumer_unusable_for_good_is_closed_and_made_again(running: Any) -> None:
    # Seen in the fault matrix: after a broker's kill -9, librdkafka fenced the static member
    # (a fatal error) and the worker kept polling the dead consumer; nothing more was delivered.
    fn = GatedFunction()
    first, fake, _ = make(fn)
    made: list[FakeConsumer] = []

    def factory(group: str, client: str) -> FakeConsumer:
        made.append(FencedConsumer(fake.log) if not made else FakeConsumer())
        if len(made) > 1:
            made[-1].log = fake.log
            made[-1].committed_offsets = made[0].committed_offsets
        return made[-1]

    consumer = FunctionConsumer(
        FunctionTarget("decode", (TOPIC,), 3),
        first._config,
        first._delivery,
        ConnectorMetrics(),
        factory,
    )
    fake.append(0, 5)
    running.append(consumer.start())
    wait_for(lambda: len(made) == 2, message="a new consumer made")
    assert made[0].closed
    fake.append(0, 5)
    wait_for(lambda: made[1].committed_offsets.get(TPS[0]) == 10, message="delivered on")
    assert consumer.rebuilds == 1 and consumer.healthy()
    assert sorted(set(fn.delivered[0])) == list(range(10))
