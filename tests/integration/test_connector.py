"""The Kafka connector against the real Kafka and a scripted stand-in for the OpenFaaS gateway.

The stand-in serves ``GET /system/functions`` (basic auth) and ``POST /function/<name>``,
answering each call as the test scripts it. Every test uses its own function name (hence
consumer group ``f2-connector-<name>``) and its own topics.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from kafka.errors import KafkaError
from pydantic import SecretStr

from f2lib.contracts.marks import Failure, Marks, Position, Redrive
from f2lib.kafka import KAFKA_CLIENTS, make_producer
from infra.local.launch.kafka import KafkaServer
from infra.local.ports import free_port
from infra.local.process import ManagedProcess, log_tail
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import KafkaDeadLetters
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.service import Connector
from infra.services.connector.worker import ConsumerFactory, kafka_consumer_factory
from infra.services.kit.openfaas import OpenFaaSClient
from tests.kafka_support import read_topic
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "admin", "stand-in-secret"
Answer = Callable[[list[dict[str, Any]]], tuple[int, str]]


@dataclass
class Call:
    function: str
    headers: dict[str, str]
    items: list[dict[str, Any]]


@dataclass
class StandInGateway:
    """A real HTTP server speaking the two gateway routes the connector uses."""

    functions: list[dict[str, Any]]
    answer: Answer = lambda items: (200, '{"ok": true}')
    gate: threading.Event = field(default_factory=threading.Event)
    calls: list[Call] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self) -> list[dict[str, Any]]:
        """Items of the calls answered 2xx, in call order."""
        with self.lock:
            return [item for call in self.calls if call.headers.get("_status") == "2xx"
                    for item in call.items]  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.path != "/system/functions":
                    return self._reply(404, "not found")
                if self.headers.get("Authorization") != expected:
                    return self._reply(401, "Unauthorized")
                return self._reply(200, json.dumps(gateway.functions))

            def do_POST(self) -> None:
                name = self.path.removeprefix("/function/")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                items = json.loads(body)
                headers = {k: v for k, v in self.headers.items()}
                with gateway.lock:
                    gateway.active += 1
                    gateway.max_active = max(gateway.max_active, gateway.active)
                try:
                    gateway.gate.wait(60)
                    status, text = gateway.answer(items)
                finally:
                    with gateway.lock:
                        gateway.active -= 1
                        if 200 <= status < 300:
                            headers["_status"] = "2xx"
                        gateway.calls.append(Call(name, headers, items))
                self._reply(status, text)

            def _reply(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Scenario:
    """A function name, its input topic and a dead-letter topic, all new for one test."""

    kafka: KafkaServer
    function: str
    topic: str
    dead_topic: str

    @property
    def group(self) -> str:
        return f"f2-connector-{self.function}"

    def listing(self, replicas: int = 1) -> list[dict[str, Any]]:
        return [
            {"name": self.function, "replicas": replicas, "labels": {},
             "annotations": {"topic": self.topic}},
            {"name": "provision", "replicas": 1, "labels": {}, "annotations": {}},
        ]  # fmt: skip

    def produce(self, values: list[dict[str, Any]], partition: int, key: str) -> None:
        producer = make_producer(self.kafka.bootstrap)
        try:
            futures = [
                producer.send(self.topic, key=key.encode(), value=json.dumps(v).encode(),
                              partition=partition)
                for v in values
            ]  # fmt: skip
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
        finally:
            producer.close(timeout=5)

    def committed(self) -> dict[int, int]:
        """The group's committed offsets by partition ({} while its coordinator is not ready)."""
        try:
            with self.kafka.admin() as admin:
                offsets = admin.list_group_offsets({self.group: None}).get(self.group, {})
        except KafkaError:
            return {}
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == self.topic}

    def read(self, topic: str, count: int, timeout: float = 30) -> list[Any]:
        return read_topic(self.kafka.bootstrap, topic, lambda rs: len(rs) >= count, timeout)


class PollLog:
    """The ``poll()`` calls of the connectors' consumer threads on their real Kafka consumers:
    when each began and how many records it handed over. Each turn of a consumer thread's
    loop takes completions and commits what was delivered, then polls, then dispatches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._polls: list[tuple[float, int]] = []

    def observe(self, factory: ConsumerFactory) -> ConsumerFactory:
        def make(group_id: str, client_id: str) -> Any:
            return ObservedConsumer(factory(group_id, client_id), self)

        return make

    def polled(self, began: float, records: int) -> None:
        with self._lock:
            self._polls.append((began, records))

    def records(self) -> int:
        with self._lock:
            return sum(records for _, records in self._polls)

    def since(self, moment: float) -> int:
        with self._lock:
            return sum(began > moment for began, _ in self._polls)

    def turns(self, count: int = 2, after: float | None = None) -> None:
        """Wait until the consumer loop went round ``count`` times after ``after`` (or now)."""
        moment = time.monotonic() if after is None else after
        wait_for(lambda: self.since(moment) >= count, message="the consumer loop stalled")


class ObservedConsumer:
    """A real kafka-python consumer whose ``poll()`` calls are written down in a ``PollLog``."""

    def __init__(self, consumer: Any, log: PollLog) -> None:
        self._consumer = consumer
        self._log = log

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        fetched = self._consumer.poll(*args, **kwargs)
        self._log.polled(began, sum(len(records) for records in fetched.values()))
        return fetched

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@pytest.fixture
def polls() -> PollLog:
    return PollLog()


@pytest.fixture
def scenario(kafka: KafkaServer) -> Scenario:
    suffix = uuid.uuid4().hex[:8]
    found = Scenario(kafka, f"fn-{suffix}", f"t-in-{suffix}", f"t-dlq-{suffix}")
    kafka.create_topics([found.topic, found.dead_topic], partitions=3)
    return found


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    stand_in = StandInGateway(functions=[])
    yield stand_in
    stand_in.close()


@pytest.fixture(params=KAFKA_CLIENTS)
def run_connector(
    request: pytest.FixtureRequest, scenario: Scenario, gateway: StandInGateway, polls: PollLog
) -> Iterator[Callable[..., Connector]]:
    started: list[tuple[Connector, threading.Event, threading.Thread, Any]] = []

    def start(**settings: Any) -> Connector:
        config = ConnectorConfig(**{
            "GATEWAY_URL": gateway.url, "GATEWAY_USERNAME": USER,
            "KAFKA_BOOTSTRAP": scenario.kafka.bootstrap, "DEAD_LETTER_TOPIC": scenario.dead_topic,
            "CONNECTOR_LINGER_MS": 20, "CONNECTOR_REFRESH_SECONDS": 0.5,
            "CONNECTOR_LAG_INTERVAL_SECONDS": 0.2, "CONNECTOR_RETRY_INITIAL_SECONDS": 0.05,
            "CONNECTOR_RETRY_MAX_SECONDS": 0.2, "CONNECTOR_INVOKE_TIMEOUT_SECONDS": 30,
            "KAFKA_CLIENT": request.param,
            **settings,
        })  # fmt: skip
        producer = make_producer(scenario.kafka.bootstrap, client=config.kafka_client)
        connector = Connector(
            config,
            OpenFaaSClient(gateway.url, USER, SecretStr(PASSWORD)),
            KafkaDeadLetters(producer, scenario.dead_topic),
            polls.observe(kafka_consumer_factory(config)),
            ConnectorMetrics(),
        )
        stop = threading.Event()
        thread = threading.Thread(target=connector.run, args=(stop,), daemon=True)
        thread.start()
        started.append((connector, stop, thread, producer))
        return connector

    yield start
    for _, stop, thread, producer in started:
        stop.set()
        gateway.gate.set()
        thread.join(timeout=60)
        producer.close(timeout=5)


def values(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"seq": i} for i in range(start, start + n)]


def test_connector__commits_offsets_only_after_2xx_and_sets_the_connector_headers(
    scenario: Scenario,
    gateway: StandInGateway,
    run_connector: Callable[..., Connector],
    polls: PollLog,
) -> None:
    gateway.functions = scenario.listing()
    gateway.gate.clear()
    scenario.produce(values(10), partition=1, key="f2-aaaaaaaaaaaa")
    run_connector()

    wait_for(lambda: gateway.active == 1, message="the function was never called")
    polls.turns()  # the loop committed (synchronously) what it had delivered: nothing yet
    assert scenario.committed().get(1) in (None, -1), "committed before the function answered"

    gateway.gate.set()
    wait_for(lambda: scenario.committed().get(1) == 10)
    assert [item["value"]["seq"] for item in gateway.delivered()] == list(range(10))
    first = gateway.calls[0]
    assert first.function == scenario.function
    assert first.headers["X-Topic"] == scenario.topic
    assert first.headers["X-Kafka-Partition"] == "1"
    assert first.headers["X-Kafka-Offset"] == str(first.items[0]["offset"]) == "0"
    assert first.headers["X-Kafka-Key"] == "f2-aaaaaaaaaaaa"
    assert first.headers["X-F2-Batch"] == str(len(first.items))
    assert "Authorization" not in first.headers, "gateway credentials must not reach functions"
    assert first.items[0] == {
        "topic": scenario.topic, "partition": 1, "offset": 0, "key": "f2-aaaaaaaaaaaa",
        "value": {"seq": 0},
    }  # fmt: skip


def test_connector__retries_5xx_and_never_skips_the_batch(
    scenario: Scenario, gateway: StandInGateway, run_connector: Callable[..., Connector]
) -> None:
    failures = iter([503, 500, 502])
    gateway.functions = scenario.listing()
    gateway.answer = lambda items: (next(failures, 200), "busy")
    scenario.produce(values(5), partition=0, key="f2-bbbbbbbbbbbb")
    connector = run_connector()

    wait_for(lambda: scenario.committed().get(0) == 5)
    assert [item["value"]["seq"] for item in gateway.delivered()] == list(range(5))
    offsets_tried = [call.headers["X-Kafka-Offset"] for call in gateway.calls]
    assert offsets_tried[:4] == ["0"] * 4, "the failed batch is sent again, from the same offset"
    sample = connector.metrics.registry.get_sample_value
    assert sample("f2_connector_retries_total",
                  {"function": scenario.function, "reason": "http_503"}) == 1  # fmt: skip


def test_connector__isolates_the_poison_record_dead_letters_it_and_delivers_the_rest(
    scenario: Scenario, gateway: StandInGateway, run_connector: Callable[..., Connector]
) -> None:
    def answer(items: list[dict[str, Any]]) -> tuple[int, str]:
        if any(item["value"].get("poison") for item in items):
            return 400, "unknown device f2-cccccccccccc"
        return 200, "ok"

    gateway.functions = scenario.listing()
    gateway.answer = answer
    batch = values(40)
    batch[17] = {"seq": 17, "poison": True}
    scenario.produce(batch, partition=2, key="f2-cccccccccccc")
    connector = run_connector(CONNECTOR_LINGER_MS=500)  # the 40 records gather in one batch

    wait_for(lambda: scenario.committed().get(2) == 40)
    delivered = [item["value"]["seq"] for item in gateway.delivered()]
    assert delivered == [i for i in range(40) if i != 17]
    letters = scenario.read(scenario.dead_topic, 1)
    assert len(letters) == 1
    letter = json.loads(letters[0].value)
    assert letter["stage"] == f"connector:{scenario.function}"
    assert letter["reason"] == "unknown device f2-cccccccccccc"
    assert letter["record"] == {"seq": 17, "poison": True}
    assert letter["source"]["offset"] == 17 and letter["source"]["partition"] == 2
    assert letters[0].key == b"f2-cccccccccccc"
    sample = connector.metrics.registry.get_sample_value
    labels = {"function": scenario.function, "topic": scenario.topic}
    assert sample("f2_connector_dead_letters_total", labels) == 1


def test_connector__hands_record_headers_to_the_function_and_keeps_marks_in_dead_letters(
    scenario: Scenario, gateway: StandInGateway, run_connector: Callable[..., Connector]
) -> None:
    where = Position("iot_dead_letter", 0, 7)
    marks = Marks(Redrive(2, where, (Failure("decode", "unknown_device", "x", None, where),)))
    gateway.functions = scenario.listing()
    gateway.answer = lambda items: (
        (400, "still unknown") if any(i["value"].get("poison") for i in items) else (200, "ok")
    )
    producer = make_producer(scenario.kafka.bootstrap)
    try:
        for i, value in enumerate([{"seq": 0}, {"seq": 1, "poison": True}, {"seq": 2}]):
            headers = marks.kafka_headers() if i else []
            producer.send(scenario.topic, key=b"f2-dddddddddddd", value=json.dumps(value).encode(),
                          partition=0, headers=headers)  # fmt: skip
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    run_connector(CONNECTOR_LINGER_MS=500)

    wait_for(lambda: scenario.committed().get(0) == 3)
    delivered = gateway.delivered()
    assert [item["value"]["seq"] for item in delivered] == [0, 2]
    assert "headers" not in delivered[0]
    assert Marks.from_headers(delivered[1]["headers"]) == marks
    [record] = scenario.read(scenario.dead_topic, 1)
    letter = json.loads(record.value)
    assert letter["reason"] == "still unknown"
    assert letter["redrive"] == {"count": 2, "dead_letter": where.to_json()}
    assert [entry["reason"] for entry in letter["history"]] == ["unknown_device"]


def test_connector__feeds_more_partitions_at_once_when_the_function_has_more_replicas(
    scenario: Scenario,
    gateway: StandInGateway,
    run_connector: Callable[..., Connector],
    polls: PollLog,
) -> None:
    gateway.functions = scenario.listing(replicas=1)
    gateway.gate.clear()
    for partition in range(3):
        scenario.produce(values(5), partition=partition, key=f"f2-00000000000{partition}")
    connector = run_connector(CONNECTOR_CONCURRENCY_PER_REPLICA=1)
    wait_for(lambda: gateway.active == 1)
    wait_for(lambda: polls.records() >= 15, message="the connector never fetched every record")
    # Two turns after the other partitions' batches were ready (linger 20 ms): the dispatch
    # between them had the chance to send one more.
    polls.turns(after=time.monotonic() + 0.05)
    in_flight = connector.metrics.registry.get_sample_value(
        "f2_connector_in_flight_batches", {"function": scenario.function}
    )
    assert in_flight == 1
    assert gateway.max_active == 1

    gateway.functions = scenario.listing(replicas=3)
    wait_for(lambda: gateway.active == 3, message="replicas=3 should feed 3 partitions at once")
    gateway.gate.set()
    wait_for(lambda: scenario.committed() == {0: 5, 1: 5, 2: 5})


def connector_env(
    scenario: Scenario, gateway: StandInGateway, tmp_path: Path, port: int, **extra: str
) -> dict[str, str]:
    """The environment of a connector process on ``scenario``'s Kafka and ``gateway``, its
    gateway password in a secrets folder, its HTTP server on ``port``, plus ``extra``."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "basic-auth-password").write_text(PASSWORD + "\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
        "F2_SECRETS_DIR": str(secrets_dir),
        "GATEWAY_URL": gateway.url, "GATEWAY_USERNAME": USER,
        "KAFKA_BOOTSTRAP": scenario.kafka.bootstrap, "DEAD_LETTER_TOPIC": scenario.dead_topic,
        "CONNECTOR_HTTP_HOST": "127.0.0.1", "CONNECTOR_HTTP_PORT": str(port),
        "CONNECTOR_REFRESH_SECONDS": "1", **extra,
    }  # fmt: skip
    env.pop("GATEWAY_PASSWORD", None)
    return env


def test_connector_process__exports_lag_and_health_and_stops_on_sigterm(
    scenario: Scenario, gateway: StandInGateway, tmp_path: Path
) -> None:
    gateway.functions = scenario.listing()
    gateway.gate.clear()
    port = free_port()
    env = connector_env(scenario, gateway, tmp_path, port, CONNECTOR_LAG_INTERVAL_SECONDS="0.5")
    process = ManagedProcess(
        "connector", [sys.executable, "-m", "infra.services.connector"], tmp_path / "connector.log",
        env=env, cwd=ROOT,
    ).start()  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def lag() -> float:
        total = 0.0
        prefix = f'f2_connector_consumer_lag{{function="{scenario.function}",'
        for line in requests.get(f"{base}/metrics", timeout=5).text.splitlines():
            if line.startswith(prefix) and f'topic="{scenario.topic}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    try:
        process.wait_ready(lambda: requests.get(f"{base}/healthz", timeout=2).ok, timeout=60)
        scenario.produce(values(12), partition=0, key="f2-dddddddddddd")
        wait_for(lambda: lag() == 12, message=lambda: log_tail(process.log_path))
        health = requests.get(f"{base}/healthz", timeout=2).json()
        assert health["consumers"] == {scenario.function: True}

        gateway.gate.set()
        wait_for(lambda: lag() == 0, message=lambda: log_tail(process.log_path))
        assert scenario.committed().get(0) == 12
        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(timeout=60) == 0
    finally:
        process.stop(timeout=10)


def test_connector__a_backlog_beyond_the_buffer_bound_pauses_resumes_and_drains_completely(
    scenario: Scenario, gateway: StandInGateway, run_connector: Callable[..., Connector]
) -> None:
    gateway.functions = scenario.listing(replicas=3)
    backlog = 4000
    for partition in range(3):
        scenario.produce(values(backlog), partition=partition, key=f"f2-00000000001{partition}")
    started = time.monotonic()
    run_connector(CONNECTOR_BATCH_MAX_RECORDS=50)

    wait_for(lambda: scenario.committed() == {0: backlog, 1: backlog, 2: backlog}, timeout=120)
    elapsed = time.monotonic() - started
    by_partition: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for item in gateway.delivered():
        by_partition[item["partition"]].append(item["offset"])
    for offsets in by_partition.values():
        assert offsets == sorted(offsets) and set(offsets) == set(range(backlog))
    assert max(len(call.items) for call in gateway.calls) <= 50
    print(f"connector drained {3 * backlog} records in {elapsed:.1f}s")


def test_connector__a_burst_with_pauses_while_the_replicas_change_is_delivered_completely(
    scenario: Scenario, gateway: StandInGateway, run_connector: Callable[..., Connector]
) -> None:
    # Under a burst that arrives while the connector consumes, partitions pause (buffer above
    # 2 x batch) and resume while the concurrency changes; once they stopped being fetched.
    batch, per_partition = 20, 1500

    def slow(items: list[dict[str, Any]]) -> tuple[int, str]:
        time.sleep(0.01 * len(items))
        return 200, "ok"

    gateway.functions = scenario.listing(replicas=1)
    gateway.answer = slow
    run_connector(CONNECTOR_BATCH_MAX_RECORDS=batch, CONNECTOR_CONCURRENCY_PER_REPLICA=1,
                  CONNECTOR_MAX_CONCURRENCY=5, CONNECTOR_LINGER_MS=5)  # fmt: skip

    def burst() -> None:
        producer = make_producer(scenario.kafka.bootstrap)
        try:
            for start in range(0, per_partition, 50):
                for partition in range(3):
                    key = f"f2-00000000002{partition}".encode()
                    for value in values(50, start):
                        data = json.dumps(value).encode()
                        producer.send(scenario.topic, key=key, value=data, partition=partition)
                producer.flush(timeout=30)
                time.sleep(0.05)
        finally:
            producer.close(timeout=5)

    producer = threading.Thread(target=burst, daemon=True)
    producer.start()
    for replicas in (3, 5, 2, 5, 1, 4, 2, 5):
        time.sleep(1.0)
        gateway.functions = scenario.listing(replicas=replicas)
    producer.join(timeout=120)
    gateway.functions = scenario.listing(replicas=5)

    done = {0: per_partition, 1: per_partition, 2: per_partition}
    wait_for(lambda: scenario.committed() == done, timeout=90,
             message="the connector stalled with lag left")  # fmt: skip
    by_partition: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for item in gateway.delivered():
        by_partition[item["partition"]].append(item["offset"])
    for offsets in by_partition.values():
        assert offsets == sorted(offsets), "a partition's records were delivered out of order"
        assert set(offsets) == set(range(per_partition))


def test_connector__a_second_connector_joining_takes_partitions_after_the_first_committed(
    scenario: Scenario,
    gateway: StandInGateway,
    run_connector: Callable[..., Connector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # kafka-python 3.0.12 calls rebalance listeners on its IO thread, where a blocking consumer
    # call (commit) raises. The first connector holds a batch per partition when the second
    # joins: it must let them finish, commit them and hand the partitions over, so that the
    # second connector starts after them and nothing is delivered twice or lost.
    gateway.functions = scenario.listing(replicas=3)
    gateway.gate.clear()
    for partition in range(3):
        scenario.produce(values(10), partition=partition, key=f"f2-00000000003{partition}")
    caplog.set_level("WARNING", logger="kafka")
    caplog.set_level("INFO", logger="infra.services.connector.worker")
    first = run_connector(CONNECTOR_CONCURRENCY_PER_REPLICA=1)
    wait_for(lambda: gateway.active == 3, message="the first connector never fed 3 partitions")

    second = run_connector(CONNECTOR_CONCURRENCY_PER_REPLICA=1)

    def revoking() -> bool:
        return any("revoking t-in-" in r.getMessage() for r in caplog.records)

    wait_for(revoking, timeout=60, message="the first connector never gave partitions up")
    # The revoke began with the three batches in flight; that it waited for them (committed
    # them before the second connector took over) shows below: nothing delivered twice.
    assert gateway.active == 3
    gateway.gate.set()

    def assigned(connector: Connector) -> float:
        value = connector.metrics.registry.get_sample_value(
            "f2_connector_assigned_partitions", {"function": scenario.function}
        )
        return value or 0.0

    wait_for(lambda: assigned(first) > 0 and assigned(second) > 0, timeout=90,
             message="the group never split the partitions between the two connectors")  # fmt: skip
    assert assigned(first) + assigned(second) == 3
    wait_for(lambda: scenario.committed() == {0: 10, 1: 10, 2: 10}, timeout=90,
             message=lambda: f"not all committed: {scenario.committed()}")  # fmt: skip
    for partition in range(3):
        scenario.produce(values(5, 10), partition=partition, key=f"f2-00000000003{partition}")
    wait_for(lambda: scenario.committed() == {0: 15, 1: 15, 2: 15}, timeout=90,
             message=lambda: f"records after the rebalance not committed: {scenario.committed()}")  # fmt: skip

    delivered = [(item["partition"], item["offset"]) for item in gateway.delivered()]
    twice = sorted(p for p in set(delivered) if delivered.count(p) > 1)
    assert not twice, f"delivered twice after the rebalance: {twice[:10]}"
    assert set(delivered) == {(p, o) for p in range(3) for o in range(15)}
    failed = [r.getMessage() for r in caplog.records if "failed on_partitions" in r.getMessage()
              or "callback throws" in r.getMessage()]  # fmt: skip
    assert not failed, failed
    for connector in (first, second):  # the listeners ran while the consumer thread waited
        races = connector.metrics.registry.get_sample_value(
            "f2_connector_rebalance_listener_races_total", {"function": scenario.function}
        )
        assert not races, "a rebalance listener ran outside poll()/close()"


def test_connector_process__killed_with_sigkill_and_started_again_delivers_within_seconds(
    scenario: Scenario, gateway: StandInGateway, tmp_path: Path
) -> None:
    """kill -9 leaves the dead consumer in its group: with kafka-python's defaults (dynamic
    membership, 45 s session timeout) the new connector's join waited for that member to
    expire, and nothing was delivered for ~45 s. With a static instance id the restarted
    connector takes the dead member's place at once."""
    gateway.functions = scenario.listing()
    port = free_port()
    env = connector_env(
        scenario, gateway, tmp_path, port, CONNECTOR_INSTANCE_ID=f"test-{scenario.function}"
    )
    base = f"http://127.0.0.1:{port}"

    def start() -> ManagedProcess:
        process = ManagedProcess(
            "connector", [sys.executable, "-m", "infra.services.connector"],
            tmp_path / "connector.log", env=env, cwd=ROOT,
        ).start()  # fmt: skip
        process.wait_ready(lambda: requests.get(f"{base}/healthz", timeout=2).ok, timeout=60)
        return process

    def delivered(seq: int) -> bool:
        return any(item["value"] == {"seq": seq} for item in gateway.delivered())

    first = start()
    second = None
    try:
        scenario.produce(values(5), partition=0, key="f2-eeeeeeeeeeee")
        wait_for(lambda: scenario.committed().get(0) == 5, message=lambda: log_tail(first.log_path))
        assert first.popen is not None
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(timeout=10)

        second = start()
        restarted = time.monotonic()
        scenario.produce(values(1, 5), partition=0, key="f2-eeeeeeeeeeee")
        wait_for(lambda: delivered(5), timeout=120, message=lambda: log_tail(second.log_path))
        waited = time.monotonic() - restarted
        print(f"connector kill -9: first delivery {waited:.1f}s after the restart")
        assert waited < 15, f"nothing delivered for {waited:.0f}s after the restart"
    finally:
        first.stop(timeout=10)
        if second is not None:
            second.stop(timeout=10)
