"""The bridge's recovery from Kafka failures: order kept per device, producers made again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.service import MqttKafkaBridge
from tests.unit.test_bridge_service import (
    GOOD_TOPIC,
    FakeClient,
    FakeProducer,
    connect,
    message,
    value,
)
from tests.waiting import wait_for

OTHER_DEVICE_TOPIC = "cmnd/f2-0000000000aa/sensor-mode/J2/sensor-1"


def seq_of(sent: Any) -> int:
    return int(json.loads(json.loads(sent.value)["payload"])["seq"])


def numbered(mid: int, topic: str = GOOD_TOPIC) -> Any:
    return message(mid, topic=topic, payload=json.dumps({"seq": mid}).encode())


class Producers:
    """The bridge's ``rebuild``: hands out new fake producers, failing ``failures`` times first."""

    def __init__(self, failures: int = 0) -> None:
        self.made: list[FakeProducer] = []
        self.failures = failures

    def __call__(self) -> FakeProducer:
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError("Unable to bootstrap")
        producer = FakeProducer()
        self.made.append(producer)
        return producer


def bridge_on(
    producer: FakeProducer,
    rebuild: Producers | None = None,
    probe: Any = None,
    **settings: Any,
) -> tuple[MqttKafkaBridge, FakeClient, BridgeMetrics]:
    config = BridgeConfig(
        client_id="unit-bridge",
        share_group="g",
        drain_timeout_s=1.0,
        retry_max_s=0.05,
        **settings,
    )
    client, metrics = FakeClient(), BridgeMetrics()
    bridge = MqttKafkaBridge(
        config,
        client,  # type: ignore[arg-type]
        producer,
        metrics,
        rebuild=rebuild,
        probe=probe,
    )
    bridge.start()
    connect(bridge, client, session_present=False)
    return bridge, client, metrics


@pytest.fixture
def stoppable() -> Any:
    bridges: list[MqttKafkaBridge] = []
    yield bridges
    for bridge in bridges:
        bridge.stop(timeout=0.2)


def test_failed_record__is_sent_again_before_any_newer_record_of_the_device(
    stoppable: list[MqttKafkaBridge],
) -> None:
    producer = FakeProducer()
    bridge, client, metrics = bridge_on(producer)
    stoppable.append(bridge)
    for mid in (1, 2):
        client.on_message(client, None, numbered(mid))
    first, second = producer.wait_sent(2)
    first.future.failure(KafkaTimeoutError("Expiring 1 record(s)"))
    client.on_message(client, None, numbered(3))  # arrives while the failure is handled

    sent = producer.wait_sent(5)
    assert [seq_of(s) for s in sent] == [1, 2, 1, 2, 3], "the unacknowledged go again, in order"
    for resent in sent[2:]:
        resent.future.success("metadata")
    second.future.success("metadata")  # a late answer about the first send of 2: no second ack
    assert client.acks == [(1, 1), (2, 1), (3, 1)]
    assert bridge.in_flight == 0
    assert value("f2_bridge_kafka_send_errors_total", metrics) == 1


def test_producer_that_stops_answering__is_replaced_and_the_records_sent_again_in_order(
    stoppable: list[MqttKafkaBridge],
) -> None:
    wedged, producers = FakeProducer(), Producers()
    bridge, client, metrics = bridge_on(wedged, producers, kafka_stall_s=0.3)
    stoppable.append(bridge)
    client.on_message(client, None, numbered(1))
    client.on_message(client, None, numbered(2, topic=OTHER_DEVICE_TOPIC))
    client.on_message(client, None, numbered(3))
    wedged.wait_sent(3)  # and never answered, neither success nor failure

    fresh = wait_for(lambda: producers.made and producers.made[0], timeout=5)
    sent = fresh.wait_sent(3)
    assert [seq_of(s) for s in sent] == [1, 2, 3]
    assert wedged.closed, "the producer given up on is closed"
    assert bridge.health()[1]["kafka"] is False
    for one in sent:
        one.future.success("metadata")
    assert sorted(client.acks) == [(1, 1), (2, 1), (3, 1)]
    assert bridge.health()[1]["kafka"] is True
    assert value("f2_bridge_producer_rebuilds_total", metrics) == 1


def test_rebuild__is_tried_again_until_kafka_answers_and_nothing_is_acked_meanwhile(
    stoppable: list[MqttKafkaBridge],
) -> None:
    failing, producers = FakeProducer(), Producers(failures=2)
    bridge, client, _ = bridge_on(failing, producers)
    stoppable.append(bridge)
    client.on_message(client, None, numbered(7))
    failing.wait_sent(1)[0].future.failure(KafkaTimeoutError("Expiring 1 record(s)"))

    fresh = wait_for(lambda: producers.made and producers.made[0], timeout=10)
    assert producers.failures == 0, "two failed attempts came first"
    assert client.acks == []
    fresh.wait_sent(1)[0].future.success("metadata")
    assert client.acks == [(7, 1)]


def test_record_the_broker_refuses_as_too_large__becomes_a_dead_letter_without_its_bytes(
    stoppable: list[MqttKafkaBridge],
) -> None:
    producer = FakeProducer()
    bridge, client, metrics = bridge_on(producer)
    stoppable.append(bridge)
    client.on_message(client, None, message(4, payload=b'{"data": "' + b"a" * 5000 + b'"}'))
    producer.wait_sent(1)[0].future.failure(MessageSizeTooLargeError("MESSAGE_TOO_LARGE"))

    letter_sent = producer.wait_sent(2)[1]
    assert letter_sent.topic == "iot_dead_letter"
    letter = json.loads(letter_sent.value)
    assert letter["reason"] == "record_too_large" and letter["stage"] == "bridge"
    assert letter["record"] == {"topic": GOOD_TOPIC, "value_bytes": letter["record"]["value_bytes"],
                                "qos": 1}  # fmt: skip
    assert len(letter_sent.value) < 1000
    letter_sent.future.success("metadata")
    assert client.acks == [(4, 1)]
    assert value("f2_bridge_kafka_send_errors_total", metrics) == 0, "no reason to recover"


class UnflushableProducer(FakeProducer):
    """A producer as kafka-python's behaves when wedged: flush and close time out."""

    def flush(self, timeout: float | None = None) -> None:
        raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
        raise KafkaTimeoutError("Timeout waiting for future")


def test_stop__with_a_producer_that_cannot_flush_or_close__returns_what_was_left() -> None:
    producer = UnflushableProducer()
    bridge, client, _ = bridge_on(producer)
    client.on_message(client, None, numbered(5))
    producer.wait_sent(1)

    assert bridge.stop(timeout=0.3) == 1
    assert client.acks == [] and client.disconnected and producer.closed


def test_producer_unanswered_while_the_cluster_answers__is_replaced_before_the_stall(
    stoppable: list[MqttKafkaBridge],
) -> None:
    """After a broker's kill -9 and restart, kafka-python delivered nothing until its delivery
    timeout; a probe that the cluster answers shows the producer is the one stuck."""
    probes: list[float] = []
    stuck, producers = FakeProducer(), Producers()
    bridge, client, _ = bridge_on(stuck, producers, probe=lambda: probes.append(1.0),
                                  kafka_stall_s=600, kafka_unanswered_s=0.3)  # fmt: skip
    stoppable.append(bridge)
    client.on_message(client, None, numbered(1))
    stuck.wait_sent(1)
    fresh = wait_for(lambda: producers.made and producers.made[0], timeout=5)
    assert probes, "the cluster was asked first"
    fresh.wait_sent(1)[0].future.success("metadata")
    assert client.acks == [(1, 1)]


def test_producer_unanswered_while_the_cluster_does_not_answer__waits_for_the_stall(
    stoppable: list[MqttKafkaBridge],
) -> None:
    probes: list[float] = []

    def down() -> None:
        probes.append(1.0)
        raise ConnectionError("no broker answers")

    waiting, producers = FakeProducer(), Producers()
    bridge, client, _ = bridge_on(waiting, producers, probe=down, kafka_stall_s=600,
                                  kafka_unanswered_s=0.1)  # fmt: skip
    stoppable.append(bridge)
    client.on_message(client, None, numbered(1))
    waiting.wait_sent(1)
    wait_for(lambda: len(probes) >= 3, timeout=5)  # asked again and again, in vain
    assert producers.made == [], "no new producer while Kafka itself does not answer"
    waiting.sent[0].future.success("metadata")
    assert client.acks == [(1, 1)]
