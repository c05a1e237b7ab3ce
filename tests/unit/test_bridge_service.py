"""The bridge's acknowledgement rules, with a fake paho client and a fake Kafka producer."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.service import MqttKafkaBridge
from tests.waiting import wait_for

GOOD_TOPIC = "cmnd/f2-a1b2c3d4e5f6/access-control-mode/J1/strike-1"
SENTINEL_TOPIC = "cmnd/f2-a1b2c3d4e5f6/access-control-mode/J1/strike-2"


class FakeClient:
    """Records what the bridge asks of paho."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []
        self.subscriptions: list[str] = []
        self.connect_args: dict[str, Any] = {}
        self.disconnected = False
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_subscribe: Any = None
        self.on_message: Any = None

    def connect_async(self, host: str, port: int, **kwargs: Any) -> None:
        self.connect_args = {"host": host, "port": port, **kwargs}

    def loop_start(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass

    def subscribe(self, topic: str, **kwargs: Any) -> None:
        self.subscriptions.append(topic)

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        self.acks.append((mid, qos))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def disconnect(self) -> None:
        self.disconnected = True


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    future: Future = field(default_factory=Future)


class FakeProducer:
    """Keeps every send's future open until the test completes it."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.closed = False
        self._changed = threading.Condition()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        sent = Sent(topic, key, value or b"")
        with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()
        return sent.future

    def wait_sent(self, count: int, timeout: float = 5.0) -> list[Sent]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.sent) >= count, timeout), (
                f"expected {count} sends, got {len(self.sent)}"
            )
            return list(self.sent)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def message(
    mid: int, topic: str = GOOD_TOPIC, payload: bytes = b'{"status": true}', dup: bool = False
) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = payload
    msg.qos = 1
    msg.dup = dup
    return msg


def connect(bridge: MqttKafkaBridge, client: FakeClient, session_present: bool) -> None:
    client.on_connect(
        client,
        None,
        mqtt.ConnectFlags(session_present=session_present),
        ReasonCode(PacketTypes.CONNACK, "Success"),
        None,
    )
    client.on_subscribe(client, None, 1, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)


@contextlib.contextmanager
def started(config: BridgeConfig, probe: Any = None) -> Iterator[Any]:
    """A started bridge on fakes, connected with a new session; stopped afterwards."""
    client, producer, metrics = FakeClient(), FakeProducer(), BridgeMetrics()
    bridge = MqttKafkaBridge(config, client, producer, metrics, probe=probe)  # type: ignore[arg-type]
    bridge.start()
    try:
        connect(bridge, client, session_present=False)
        yield bridge, client, producer, metrics
    finally:
        if not client.disconnected:
            bridge.stop(timeout=0.5)


@pytest.fixture
def parts() -> Any:
    config = BridgeConfig(
        client_id="unit-bridge",
        share_group="g",
        max_in_flight=2,
        drain_timeout_s=2.0,
        retry_max_s=0.2,
    )
    with started(config) as found:
        yield found


def value(name: str, metrics: BridgeMetrics, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return found or 0.0


def test_start__connects_persistent_session_with_receive_maximum_and_shared_subscription(
    parts: Any,
) -> None:
    bridge, client, _, _ = parts
    assert client.connect_args["clean_start"] is False
    props = client.connect_args["properties"]
    assert props.SessionExpiryInterval == 3600
    assert props.ReceiveMaximum == 2
    assert client.subscriptions == ["$share/g/cmnd/#"]
    assert bridge.health()[0] is False  # Kafka has not answered yet
    bridge.mark_kafka_ready()
    assert bridge.health()[0] is True


def test_message__is_acked_only_after_kafka_acknowledged_its_record(parts: Any) -> None:
    bridge, client, producer, metrics = parts
    client.on_message(client, None, message(7))
    (sent,) = producer.wait_sent(1)
    assert sent.topic == "raw_iot_data"
    assert sent.key == b"f2-a1b2c3d4e5f6"
    record = json.loads(sent.value)
    assert record["topic"] == GOOD_TOPIC
    assert record["payload"] == '{"status": true}'
    assert record["qos"] == 1
    client.on_message(client, None, message(8, topic=SENTINEL_TOPIC))
    sentinel = producer.wait_sent(2)[1]  # the sender is done with message 7
    assert client.acks == []
    assert bridge.in_flight == 2  # message 7 and the sentinel

    sent.future.success("metadata")
    assert client.acks == [(7, 1)]
    assert bridge.in_flight == 1  # the sentinel
    assert value("f2_bridge_messages_acknowledged_total", metrics) == 1
    assert value("f2_bridge_records_produced_total", metrics, kind="raw") == 1
    sentinel.future.success("metadata")


def test_kafka_failure__is_never_acked_and_the_record_is_sent_again(parts: Any) -> None:
    _, client, producer, metrics = parts
    client.on_message(client, None, message(3))
    first = producer.wait_sent(1)[0]
    first.future.failure(KafkaTimeoutError("broker gone"))
    assert client.acks == []
    assert value("f2_bridge_kafka_send_errors_total", metrics) == 1

    second = producer.wait_sent(2)[1]
    assert second.value == first.value and second.key == first.key
    assert client.acks == []
    second.future.success("metadata")
    assert client.acks == [(3, 1)]


def test_malformed_topic__goes_to_dead_letter_with_stage_and_reason_then_is_acked(
    parts: Any,
) -> None:
    _, client, producer, metrics = parts
    client.on_message(client, None, message(9, topic="cmnd/f2-a1b2c3d4e5f6/disco-mode/J1/strike-1"))
    (sent,) = producer.wait_sent(1)
    assert sent.topic == "iot_dead_letter"
    assert sent.key == b"f2-a1b2c3d4e5f6"
    letter = json.loads(sent.value)
    assert letter["stage"] == "bridge"
    assert letter["reason"] == "bad_topic"
    assert "disco-mode" in letter["error"]
    assert letter["record"]["topic"] == "cmnd/f2-a1b2c3d4e5f6/disco-mode/J1/strike-1"
    assert client.acks == []
    sent.future.success("metadata")
    assert client.acks == [(9, 1)]
    assert value("f2_bridge_dead_letters_total", metrics, reason="bad_topic") == 1


def test_in_flight_limit__blocks_the_handoff_until_kafka_acknowledges(
    parts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bridge, client, producer, _ = parts
    client.on_message(client, None, message(1))
    client.on_message(client, None, message(2))
    producer.wait_sent(2)
    third = threading.Thread(target=client.on_message, args=(client, None, message(3)))
    third.start()
    # the third waits for a slot (or, wrongly, is through already)
    wait_for(lambda: "in-flight limit 2 reached" in caplog.text or not third.is_alive())
    assert third.is_alive(), "the third message must wait for a free slot"
    assert bridge.in_flight == 2

    producer.sent[0].future.success("metadata")
    third.join(timeout=2)
    assert not third.is_alive()
    producer.wait_sent(3)
    assert bridge.in_flight == 2


def test_redelivery_of_a_message_still_in_flight__is_not_produced_twice(parts: Any) -> None:
    _, client, producer, metrics = parts
    client.on_message(client, None, message(5))
    producer.wait_sent(1)
    connect(parts[0], client, session_present=True)
    client.on_message(client, None, message(5, dup=True))
    assert parts[0].in_flight == 1, "the redelivery must not be taken in"
    client.on_message(client, None, message(6, topic=SENTINEL_TOPIC))
    sent = producer.wait_sent(2)  # a sentinel: sent after anything taken in before it
    assert [json.loads(s.value)["topic"] for s in sent] == [GOOD_TOPIC, SENTINEL_TOPIC]
    assert value("f2_bridge_redeliveries_skipped_total", metrics) == 1
    producer.sent[0].future.success("metadata")
    assert client.acks == [(5, 1)]
    sent[1].future.success("metadata")


def test_ack_owed_to_an_ended_session__is_not_sent_on_the_new_one(parts: Any) -> None:
    bridge, client, producer, metrics = parts
    client.on_message(client, None, message(4))
    producer.wait_sent(1)
    connect(bridge, client, session_present=False)
    producer.sent[0].future.success("metadata")
    assert client.acks == []
    assert bridge.in_flight == 0
    assert value("f2_bridge_reconnects_total", metrics, side="mqtt") == 1


def test_stop__acks_what_kafka_took_then_disconnects_and_ignores_new_messages(
    parts: Any,
) -> None:
    bridge, client, producer, _ = parts
    client.on_message(client, None, message(11))
    sent = producer.wait_sent(1)[0]
    threading.Timer(0.2, sent.future.success, args=("metadata",)).start()

    left = bridge.stop(timeout=3)
    assert left == 0
    assert client.acks == [(11, 1)]
    assert client.disconnected and producer.closed

    client.on_message(client, None, message(12))  # returns at once: the bridge is stopping
    assert bridge.in_flight == 0, "a stopped bridge must not take the message in"
    assert len(producer.sent) == 1
    assert client.acks == [(11, 1)]


def test_stop__reports_messages_kafka_never_took_and_does_not_ack_them(parts: Any) -> None:
    bridge, client, producer, _ = parts
    client.on_message(client, None, message(21))
    producer.wait_sent(1)
    assert bridge.stop(timeout=0.3) == 1
    assert client.acks == []
    assert client.disconnected


def test_idle_bridge__probes_kafka_and_health_follows_the_answer() -> None:
    answers = {"up": True}

    def probe() -> None:
        if not answers["up"]:
            raise ConnectionError("no broker answers")

    config = BridgeConfig(client_id="unit-bridge", kafka_probe_s=0.2)
    with started(config, probe) as (bridge, _, _, metrics):
        bridge.mark_kafka_ready()
        assert bridge.health()[0] is True

        answers["up"] = False
        wait_for(lambda: bridge.health()[0] is False)
        assert bridge.health()[1]["kafka"] is False
        assert value("f2_bridge_connected", metrics, side="kafka") == 0

        answers["up"] = True
        wait_for(lambda: bridge.health()[0] is True)
        assert value("f2_bridge_connected", metrics, side="kafka") == 1


def test_busy_bridge__is_not_probed_while_deliveries_answer() -> None:
    probes: list[float] = []
    config = BridgeConfig(client_id="unit-bridge", kafka_probe_s=0.3)
    with started(config, lambda: probes.append(1.0)) as (_, client, producer, _):
        deadline = time.monotonic() + 1.0
        mid = 0
        while time.monotonic() < deadline:  # a delivery answered every 50 ms
            mid += 1
            client.on_message(client, None, message(mid))
            sent = producer.wait_sent(mid)
            sent[-1].future.success(None)
            time.sleep(0.05)
        assert probes == []
        wait_for(lambda: len(probes) >= 1, timeout=3.0)  # idle now: probed
