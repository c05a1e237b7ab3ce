"""A QoS 1 publisher that remembers which of its messages the broker acknowledged (PUBACK).

It plays the devices: a persistent MQTT v5 session (clean_start False), paho's reconnects
(1-2 s), and paho's own re-sending of the messages not acknowledged when the connection
dropped. Run in a process of its own (spawned), so that the harness's faults and checks do
not slow its pace. Times are wall-clock (``time.time()``), comparable with PostgreSQL's.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from f2lib.errors import ChaosError
from f2lib.mqtt import paho_client

MAX_MID = 65536  # paho numbers packets 1..65535, then again: one number per message here


@dataclass(frozen=True)
class PublishPlan:
    """``messages`` (topic, payload) sent at ``rate`` per second from ``start_at`` (wall time)."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    client_id: str
    messages: list[tuple[str, bytes]] = field(repr=False)
    rate: float
    start_at: float
    ack_timeout_s: float = 240.0
    max_inflight: int = 100


@dataclass
class PublishOutcome:
    """Which messages the broker acknowledged (by index), and when things happened."""

    acked: list[bool]
    first_publish: float = 0.0
    last_publish: float = 0.0
    last_ack: float = 0.0
    disconnects: int = 0

    @property
    def acknowledged(self) -> int:
        return sum(self.acked)


def publish(plan: PublishPlan) -> PublishOutcome:
    """Send every message of ``plan``; wait for the acknowledgements (or the ack timeout)."""
    if len(plan.messages) >= MAX_MID:
        raise ChaosError(f"at most {MAX_MID - 1} messages per publisher (MQTT packet ids)")
    outcome = PublishOutcome(acked=[False] * len(plan.messages))
    index_of: dict[int, int] = {}
    early: dict[int, bool] = {}  # PUBACKs that came before publish() returned their mid
    lock = threading.Condition()
    connected = threading.Event()
    answered = 0

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            connected.set()

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      props: Any) -> None:  # fmt: skip
        outcome.disconnects += 1

    def answer(index: int, ok: bool) -> None:
        nonlocal answered
        outcome.acked[index] = ok
        answered += 1
        outcome.last_ack = time.time()
        lock.notify_all()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # paho calls this holding its own message lock, which publish() takes too: never call
        # publish() while holding ``lock``.
        with lock:
            index = index_of.pop(mid, None)
            if index is None:
                early[mid] = not reason.is_failure
            else:
                answer(index, not reason.is_failure)

    client = paho_client(
        plan.client_id,
        username=plan.username,
        password=SecretStr(plan.password),
        reconnect_delay_s=(1, 2),
        max_inflight=plan.max_inflight,
    )
    client.max_queued_messages_set(0)
    client.on_connect, client.on_disconnect, client.on_publish = (
        on_connect,
        on_disconnect,
        on_publish,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect(plan.host, plan.port, keepalive=10, clean_start=False, properties=properties)
    client.loop_start()
    try:
        if not connected.wait(30):
            raise ChaosError(f"publisher {plan.client_id} not connected")
        time.sleep(max(0.0, plan.start_at - time.time()))
        started = time.monotonic()
        outcome.first_publish = time.time()
        for index, (topic, payload) in enumerate(plan.messages):
            delay = started + index / plan.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            info = client.publish(topic, payload, qos=1)
            with lock:
                if info.mid in early:
                    answer(index, early.pop(info.mid))
                else:
                    index_of[info.mid] = index
        outcome.last_publish = time.time()
        deadline = time.monotonic() + plan.ack_timeout_s
        with lock:
            while answered < len(plan.messages) and time.monotonic() < deadline:
                lock.wait(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome


class PublisherProcess:
    """Runs ``publish`` in a spawned process of its own."""

    def __init__(self) -> None:
        self._executor = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._executor.submit(time.time).result()  # started before anything is timed

    def submit(self, plan: PublishPlan) -> Future[PublishOutcome]:
        return self._executor.submit(publish, plan)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
