"""The bridge (``python -m bridge``) between the real Mosquitto and the real Kafka.

Each test gets its own device MAC (the bridge's topic filter is ``cmnd/<device>/#``), its own
client id and share group, and its own Kafka topics, so tests never see each other's records.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from f2lib.kafka import KAFKA_CLIENTS
from infra.local.launch.kafka import KafkaServer
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port
from infra.local.process import ManagedProcess, log_tail
from tests.kafka_support import read_topic, read_topic_to_end
from tests.mqtt_support import Publisher
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = 10_000  # the seq of a message sent after the ones a test counts


@dataclass
class BridgeRun:
    """One bridge configuration; ``start()`` may be called again after a kill (same client id)."""

    env: dict[str, str]
    log_path: Path
    http_port: int
    device: str
    raw_topic: str
    dead_letter_topic: str
    process: ManagedProcess | None = None

    def start(self) -> BridgeRun:
        self.process = ManagedProcess(
            "bridge", [sys.executable, "-m", "bridge"], self.log_path, env=self.env, cwd=ROOT
        ).start()
        self.process.wait_ready(self.healthy, timeout=60)
        return self

    def healthy(self) -> bool:
        return requests.get(self.url("/healthz"), timeout=2).status_code == 200

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def metric(self, name: str) -> float:
        for line in requests.get(self.url("/metrics"), timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not exported")

    def kill(self) -> None:
        assert self.process is not None and self.process.popen is not None
        os.kill(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None and self.process.popen is not None
        self.process.popen.send_signal(signal.SIGTERM)
        return self.process.popen.wait(timeout=60)

    def log(self) -> str:
        return log_tail(self.log_path, 60)


@pytest.fixture(params=KAFKA_CLIENTS)
def bridge_run(
    request: pytest.FixtureRequest, mosquitto: MosquittoServer, kafka: KafkaServer, tmp_path: Path
) -> Iterator[BridgeRun]:
    suffix = uuid.uuid4().hex[:8]
    device = f"f2-{uuid.uuid4().hex[:12]}"
    raw_topic, dead_topic = f"t-raw-{suffix}", f"t-dead-{suffix}"
    kafka.create_topics([raw_topic, dead_topic], partitions=3)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "mqtt-bridge-password").write_text(mosquitto.password + "\n")
    http_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
        "F2_SECRETS_DIR": str(secrets_dir),
        "MQTT_HOST": mosquitto.host,
        "MQTT_PORT": str(mosquitto.port),
        "MQTT_USERNAME": mosquitto.username,
        "MQTT_RECONNECT_MAX_SECONDS": "2",
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "KAFKA_CLIENT": request.param,
        "RAW_TOPIC": raw_topic,
        "DEAD_LETTER_TOPIC": dead_topic,
        "BRIDGE_CLIENT_ID": f"bridge-test-{suffix}",
        "BRIDGE_SHARE_GROUP": f"g-{suffix}",
        "BRIDGE_TOPIC_FILTER": f"cmnd/{device}/#",
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": str(http_port),
        "LOG_LEVEL": "INFO",
    }
    env.pop("MQTT_PASSWORD", None)
    run = BridgeRun(env, tmp_path / "bridge.log", http_port, device, raw_topic, dead_topic)
    yield run
    if run.process is not None:
        run.process.stop(timeout=20)


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port, mosquitto.username, mosquitto.password)
    yield pub
    pub.close()


def payload(seq: int) -> bytes:
    return json.dumps(
        {"status": seq % 2 == 0, "seq": seq, "timestamp": "2023-05-26 18:34:04.928538"}
    ).encode()


def seqs(records: list[Any]) -> Counter[int]:
    return Counter(json.loads(json.loads(r.value)["payload"])["seq"] for r in records)


def test_bridge__delivers_keyed_raw_records_and_acks_them(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    bridge_run.start()
    topic = f"cmnd/{bridge_run.device}/access-control-mode/J1/strike-1"
    publisher.publish(topic, [payload(i) for i in range(50)])

    records = read_topic(kafka.bootstrap, bridge_run.raw_topic, lambda rs: len(rs) >= 50)
    assert sorted(seqs(records)) == list(range(50))
    assert {r.key for r in records} == {bridge_run.device.encode()}
    assert len({r.partition for r in records}) == 1, "one key, one partition"
    ordered = sorted(records, key=lambda r: r.offset)
    assert [json.loads(json.loads(r.value)["payload"])["seq"] for r in ordered] == list(range(50))
    value = json.loads(records[0].value)
    assert value["topic"] == topic
    assert value["qos"] == 1
    assert value["received_at"]

    wait_for(
        lambda: bridge_run.metric("f2_bridge_messages_acknowledged_total") >= 50,
        timeout=10,
        message=bridge_run.log,
    )
    assert bridge_run.metric("f2_bridge_messages_received_total") == 50
    assert bridge_run.metric("f2_bridge_messages_in_flight") == 0
    health = requests.get(bridge_run.url("/healthz"), timeout=2).json()
    assert health["mqtt"] is True and health["kafka"] is True


def test_bridge__forwards_command_replies_to_the_replies_topic_keyed_by_device(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    replies_topic = f"t-replies-{uuid.uuid4().hex[:8]}"
    kafka.create_topics([replies_topic], partitions=3)
    bridge_run.env["BRIDGE_REPLY_FILTER"] = f"ctrl-resp/{bridge_run.device}"
    bridge_run.env["COMMAND_REPLIES_TOPIC"] = replies_topic
    bridge_run.start()
    reply = json.dumps({"command_id": str(uuid.uuid4()), "result": "ok"}).encode()
    publisher.publish(f"ctrl-resp/{bridge_run.device}", [reply])
    uplink = f"cmnd/{bridge_run.device}/access-control-mode/J1/strike-1"
    publisher.publish(uplink, [payload(1)])

    read_topic(kafka.bootstrap, replies_topic, lambda rs: len(rs) >= 1)
    raw = read_topic(kafka.bootstrap, bridge_run.raw_topic, lambda rs: len(rs) >= 1)
    assert [json.loads(r.value)["topic"] for r in raw] == [uplink]
    # The uplink came after the reply: the replies topic, read to its end now, holds it once.
    (record,) = read_topic_to_end(kafka.bootstrap, replies_topic)
    assert record.key == bridge_run.device.encode()
    value = json.loads(record.value)
    assert value["topic"] == f"ctrl-resp/{bridge_run.device}"
    assert value["payload"] == reply.decode() and value["received_at"]
    assert bridge_run.metric('f2_bridge_records_produced_total{kind="reply"}') == 1


def test_bridge__malformed_topic_goes_to_dead_letter_and_later_messages_still_flow(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    bridge_run.start()
    bad = f"cmnd/{bridge_run.device}/party-mode/J9/strike-1"
    good = f"cmnd/{bridge_run.device}/sensor-mode/J2/sensor-1"
    publisher.publish(bad, [b'{"status": true}'])
    publisher.publish(good, [payload(1)])

    letters = read_topic(kafka.bootstrap, bridge_run.dead_letter_topic, lambda rs: len(rs) >= 1)
    assert len(letters) == 1
    letter = json.loads(letters[0].value)
    assert letter["stage"] == "bridge"
    assert letter["reason"] == "bad_topic"
    assert "party-mode" in letter["error"]
    assert letter["record"]["topic"] == bad
    assert letters[0].key == bridge_run.device.encode()

    raw = read_topic(kafka.bootstrap, bridge_run.raw_topic, lambda rs: len(rs) >= 1)
    assert [json.loads(r.value)["topic"] for r in raw] == [good]
    assert bridge_run.metric('f2_bridge_dead_letters_total{reason="bad_topic"}') == 1


def test_bridge__messages_not_acked_before_kafka_acked_are_redelivered_after_sigkill(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    """Kafka is frozen (SIGSTOP) so that the bridge holds received, unacknowledged messages;
    the bridge is then killed, Kafka thawed, and a bridge with the same client id started."""
    topic = f"cmnd/{bridge_run.device}/alarm-mode/J3/siren-1"
    bridge_run.start()
    publisher.publish(topic, [payload(i) for i in range(100)])
    read_topic(kafka.bootstrap, bridge_run.raw_topic, lambda rs: len(rs) >= 100)

    assert kafka.process is not None and kafka.process.pid is not None
    kafka_pid = kafka.process.pid
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        publisher.publish(topic, [payload(i) for i in range(100, 300)])
        wait_for(
            lambda: bridge_run.metric("f2_bridge_messages_received_total") >= 300,
            timeout=30,
            message=bridge_run.log,
        )
        assert bridge_run.metric("f2_bridge_messages_acknowledged_total") == 100
        assert bridge_run.metric("f2_bridge_messages_in_flight") == 200
        bridge_run.kill()
    finally:
        os.kill(kafka_pid, signal.SIGCONT)

    bridge_run.start()
    records = read_topic(
        kafka.bootstrap, bridge_run.raw_topic, lambda rs: set(seqs(rs)) >= set(range(300))
    )
    counts = seqs(records)
    missing = set(range(300)) - set(counts)
    assert not missing, f"lost {sorted(missing)[:20]}...; log:\n{bridge_run.log()}"
    assert all(counts[i] == 1 for i in range(100)), "acknowledged messages are not redelivered"


def test_bridge__sigterm_flushes_acks_and_disconnects_so_nothing_is_redelivered(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    topic = f"cmnd/{bridge_run.device}/access-control-mode/J4/reader-1"
    bridge_run.start()
    publisher.publish(topic, [payload(i) for i in range(200)])
    first_acked = bridge_run.metric("f2_bridge_messages_acknowledged_total")
    assert bridge_run.terminate() == 0
    log = bridge_run.log()
    assert "bridge stopped" in log

    # Whatever the first bridge did not take waits in its session; a restart takes it, and
    # what it acknowledged is not delivered again. A sentinel published after the restart
    # reaches Kafka after everything the session held (one topic, one key, in order), so once
    # it is read, a redelivered duplicate would have been read too.
    bridge_run.start()
    publisher.publish(topic, [payload(SENTINEL)])
    records = read_topic(kafka.bootstrap, bridge_run.raw_topic, lambda rs: SENTINEL in seqs(rs))
    counts = seqs(records)
    del counts[SENTINEL]
    missing = sorted(set(range(200)) - set(counts))
    assert not missing, (
        f"{len(missing)} of 200 never reached Kafka (first: {missing[:5]}); the first bridge "
        f"had acknowledged >= {first_acked:.0f}; second bridge received "
        f"{bridge_run.metric('f2_bridge_messages_received_total'):.0f}, acknowledged "
        f"{bridge_run.metric('f2_bridge_messages_acknowledged_total'):.0f}\n{bridge_run.log()}"
    )
    assert set(counts) == set(range(200))
    assert max(counts.values()) == 1, f"duplicates after a clean stop: {counts.most_common(3)}"


def test_bridge__burst_stays_within_the_in_flight_bound_and_loses_nothing(
    bridge_run: BridgeRun, publisher: Publisher, kafka: KafkaServer
) -> None:
    bridge_run.env["BRIDGE_MAX_IN_FLIGHT"] = "20"
    bridge_run.start()
    topic = f"cmnd/{bridge_run.device}/sensor-mode/J1/motion-sensor-1"
    burst = 3000
    peak = 0.0
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, bridge_run.metric("f2_bridge_messages_in_flight"))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    publisher.publish(topic, [payload(i) for i in range(burst)])
    records = read_topic(
        kafka.bootstrap, bridge_run.raw_topic, lambda rs: len(seqs(rs)) >= burst, 120
    )
    elapsed = time.monotonic() - started
    sampling = False
    sampler.join()
    assert set(seqs(records)) == set(range(burst))
    assert 0 < peak <= 20, f"in-flight peaked at {peak}"
    print(f"bridge burst: {burst} messages in {elapsed:.1f}s, in-flight peak {peak:.0f}")


def test_bridge__idle_bridge_notices_kafka_going_away_and_coming_back(
    bridge_run: BridgeRun, publisher: Publisher, tmp_path: Path
) -> None:
    # A Kafka node of this test's own: it is stopped and started again.
    own = KafkaServer(tmp_path / "kafka", free_port(), free_port(), partitions=1)
    own.start()
    try:
        own.create_topics([bridge_run.raw_topic, bridge_run.dead_letter_topic], partitions=1)
        bridge_run.env["KAFKA_BOOTSTRAP"] = own.bootstrap
        bridge_run.env["BRIDGE_KAFKA_PROBE_SECONDS"] = "1"
        bridge_run.start()

        def health() -> tuple[int, dict[str, Any]]:
            answer = requests.get(bridge_run.url("/healthz"), timeout=5)
            return answer.status_code, answer.json()

        assert health()[0] == 200
        own.stop()
        wait_for(
            lambda: health()[0] != 200,
            timeout=60,
            interval=0.5,
            message="an idle bridge still says Kafka is fine",
        )
        assert health()[1]["kafka"] is False
        assert bridge_run.metric('f2_bridge_connected{side="kafka"}') == 0

        own.start()
        wait_for(
            lambda: health()[0] == 200,
            timeout=90,
            interval=0.5,
            message=lambda: f"Kafka is back but: {health()[1]}",
        )
        topic = f"cmnd/{bridge_run.device}/access-control-mode/J1/strike-1"
        publisher.publish(topic, [payload(1)])
        records = read_topic(own.bootstrap, bridge_run.raw_topic, lambda rs: len(rs) >= 1)
        assert seqs(records) == Counter({1: 1})
    finally:
        own.stop()


def first_copies_in_order(records: list[Any]) -> list[int]:
    """The seqs of one partition's records by offset, each at its first copy only."""
    seen: set[int] = set()
    order = []
    for record in sorted(records, key=lambda r: r.offset):
        seq = json.loads(json.loads(record.value)["payload"])["seq"]
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    return order


def test_bridge__a_broker_killed_under_load_and_restarted_gets_everything_without_a_restart(
    bridge_run: BridgeRun, publisher: Publisher, tmp_path: Path
) -> None:
    """kill -9 of Kafka while records are in flight: kafka-python's idempotent producer expires
    them, clears its producer id and (before the fix) never delivered again. The bridge gives
    up on it, makes a new producer once Kafka is back, and sends what was not acknowledged in
    the order received; its stop afterwards is clean."""
    own = KafkaServer(tmp_path / "kafka", free_port(), free_port(), partitions=1)
    own.start()
    try:
        own.create_topics([bridge_run.raw_topic, bridge_run.dead_letter_topic], partitions=1)
        bridge_run.env["KAFKA_BOOTSTRAP"] = own.bootstrap
        bridge_run.env["BRIDGE_KAFKA_DELIVERY_TIMEOUT_MS"] = "20000"  # the least kafka allows
        bridge_run.start()
        topic = f"cmnd/{bridge_run.device}/access-control-mode/J1/strike-1"
        total = 1500
        published = threading.Event()

        def pump() -> None:
            for seq in range(total):
                publisher.publish(topic, [payload(seq)])
                time.sleep(0.004)
            published.set()

        sender = threading.Thread(target=pump, daemon=True)
        sender.start()
        wait_for(lambda: bridge_run.metric("f2_bridge_messages_acknowledged_total") >= 200)
        assert own.process is not None and own.process.popen is not None
        os.kill(own.process.popen.pid, signal.SIGKILL)  # records in flight to it
        own.process.popen.wait(timeout=10)
        wait_for(
            lambda: bridge_run.metric("f2_bridge_kafka_send_errors_total") >= 1,
            timeout=90,
            message="the records sent to the dead broker never failed",
        )
        own.start()  # the same data folder and port: the broker comes back
        back = time.monotonic()
        records = read_topic(
            own.bootstrap,
            bridge_run.raw_topic,
            lambda rs: published.is_set() and set(seqs(rs)) >= set(range(total)),
            timeout=180,
        )
        drained = time.monotonic() - back
        missing = set(range(total)) - set(seqs(records))
        assert not missing, f"{len(missing)} never reached Kafka\n{bridge_run.log()}"
        print(f"broker kill: {total} delivered {drained:.1f}s after the broker was back")
        assert first_copies_in_order(records) == list(range(total)), "per-device order"
        assert bridge_run.metric("f2_bridge_producer_rebuilds_total") >= 1
        wait_for(bridge_run.healthy, timeout=30, message="healthy again")
        assert bridge_run.terminate() == 0
        log = bridge_run.log()
        assert "Traceback" not in log and "bridge stopped" in log, log
    finally:
        own.stop()
