"""What Mosquitto keeps of a persistent session's queue when it is killed (kill -9) or stopped.

Mosquitto 2.0 persists by snapshot only. The queue of a session whose client is away (a bridge
that lags or is down) is at risk between two snapshots: f2pipe takes one every 500 changes
(queued messages), so a kill -9 loses at most that many, where the default (every 30 s) lost
everything queued in the last 30 s.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from f2lib.mqtt import paho_client
from infra.deploy.mosquitto.config import DEFAULT_AUTOSAVE_CHANGES
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port
from tests.mqtt_support import Publisher
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
TOPIC = "lag/queue"
SENTINEL = b"sentinel"


class SessionSubscriber:
    """A QoS 1 subscriber with a persistent session (clean_start False, an hour's expiry)."""

    def __init__(self, server: MosquittoServer, client_id: str) -> None:
        self.received: list[bytes] = []
        self._subscribed = threading.Event()
        self.client = paho_client(
            client_id, username=server.username, password=SecretStr(server.password)
        )
        self.client.on_message = lambda c, u, message: self.received.append(message.payload)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe(TOPIC, qos=1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self.client.connect(server.host, server.port, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self._subscribed.wait(15), "not subscribed"

    def seqs(self) -> set[int]:
        return {int(p) for p in self.received if p != SENTINEL}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(runtime_root: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(runtime_root / f"mq-{uuid.uuid4().hex[:8]}", free_port()).start()
    yield server
    server.stop()


def queue_then(broker: MosquittoServer, count: int, stop: signal.Signals) -> set[int]:
    """Queue ``count`` acknowledged messages for an away session, stop the broker with
    ``stop``, start it again; the messages the session gets back (up to a sentinel)."""
    client_id = f"lagger-{uuid.uuid4().hex[:8]}"
    SessionSubscriber(broker, client_id).close()  # its session now queues for it
    publisher = Publisher(broker.host, broker.port, broker.username, broker.password)
    try:
        publisher.publish(TOPIC, [str(seq).encode() for seq in range(count)])  # all PUBACKed
    finally:
        publisher.close()
    assert broker.process is not None and broker.process.popen is not None
    os.kill(broker.process.popen.pid, stop)
    broker.process.popen.wait(timeout=30)
    broker.start()
    back = SessionSubscriber(broker, client_id)
    after = Publisher(broker.host, broker.port, broker.username, broker.password)
    try:
        after.publish(TOPIC, [SENTINEL])  # queued behind whatever the snapshot restored
        wait_for(lambda: SENTINEL in back.received, timeout=60, message="the sentinel arrives")
        return back.seqs()
    finally:
        after.close()
        back.close()


def test_kill_9__loses_at_most_the_messages_queued_since_the_last_snapshot(
    broker: MosquittoServer,
) -> None:
    count = 2 * DEFAULT_AUTOSAVE_CHANGES + 321
    restored = queue_then(broker, count, signal.SIGKILL)
    lost = set(range(count)) - restored
    # a snapshot every 500 changes: at most the last 500 (and the session's own changes)
    assert len(lost) <= DEFAULT_AUTOSAVE_CHANGES + 5, f"lost {len(lost)} of {count}"
    assert not lost or min(lost) >= count - DEFAULT_AUTOSAVE_CHANGES - 5, "only the newest"
    print(f"mosquitto kill -9: {len(lost)} of {count} acknowledged queued messages lost")


def test_sigterm__keeps_every_queued_message(broker: MosquittoServer) -> None:
    count = DEFAULT_AUTOSAVE_CHANGES + 321
    assert queue_then(broker, count, signal.SIGTERM) == set(range(count))
