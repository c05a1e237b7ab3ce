"""The largest MQTT packet the broker takes (``MAX_PACKET_BYTES``): a message below it is
delivered, one above it is refused (the publisher disconnected, nothing delivered) and the
broker goes on serving everyone else."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from f2lib.mqtt import MqttVersion, paho_client
from infra.deploy.mosquitto.config import MAX_PACKET_BYTES
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
TOPIC = "limits/payload"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    root: Path = tmp_path_factory.mktemp("mq-limits")
    server = MosquittoServer(root / "mosquitto", free_port()).start()
    yield server
    server.stop()


class Client:
    """A connected client of the internal listener that records what it receives and why it
    was disconnected."""

    def __init__(self, broker: MosquittoServer, version: MqttVersion = "5") -> None:
        self.received: list[bytes] = []
        self.disconnected = threading.Event()
        self.reasons: list[str] = []
        connected = threading.Event()
        self.client = paho_client(
            f"limits-{uuid.uuid4().hex[:8]}",
            version=version,
            username=broker.username,
            password=SecretStr(broker.password),
        )
        self.client.on_connect = lambda *args: connected.set()
        self.client.on_message = lambda c, u, message: self.received.append(message.payload)
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(15), "not connected"

    def _on_disconnect(self, client: object, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:  # fmt: skip
        self.reasons.append(str(reason))
        self.disconnected.set()

    def subscribe(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.subscribe(TOPIC, qos=1)
        assert subscribed.wait(15), "not subscribed"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker: MosquittoServer) -> Iterator[Client]:
    client = Client(broker)
    client.subscribe()
    yield client
    client.close()


def test_a_message_below_the_limit_is_delivered(
    broker: MosquittoServer, subscriber: Client
) -> None:
    payload = b"x" * (MAX_PACKET_BYTES - 1024)
    publisher = Client(broker)
    try:
        info = publisher.client.publish(TOPIC, payload, qos=1)
        info.wait_for_publish(timeout=15)
        assert info.is_published()
    finally:
        publisher.close()
    wait_for(lambda: payload in subscriber.received, timeout=15, message="the message arrives")


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_a_message_above_the_limit_is_refused_and_the_broker_serves_on(
    broker: MosquittoServer, subscriber: Client, version: MqttVersion
) -> None:
    big = b"y" * (MAX_PACKET_BYTES + 1)
    publisher = Client(broker, version)
    try:
        info = publisher.client.publish(TOPIC, big, qos=1)
        # MQTT 3.1.1: the broker drops the connection; MQTT 5: it says why first (0x95), or
        # paho refuses the packet itself, having read the limit in CONNACK.
        wait_for(
            lambda: publisher.disconnected.is_set() or info.rc != 0,
            timeout=15,
            message="the oversized publish refused",
        )
        assert not info.is_published()
    finally:
        publisher.close()
    after = Client(broker)
    try:
        small = f"after-{version}".encode()
        done = after.client.publish(TOPIC, small, qos=1)
        done.wait_for_publish(timeout=15)
        assert done.is_published()
    finally:
        after.close()
    wait_for(lambda: small in subscriber.received, timeout=15, message="later messages arrive")
    assert big not in subscriber.received
