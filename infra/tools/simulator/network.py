"""MQTT over mutual TLS for many simulated devices: one paho client each, few threads in all.

Every client runs on paho's external-loop API (``loop_read``/``loop_write``/``loop_misc``)
inside a ``Shard``: one thread that multiplexes up to a few hundred device sockets with a
selector and publishes each device's messages when they are due. Nothing else touches a
client while its shard runs, so publish, acknowledgement and counting need no locks.
Counters are plain integers read (never written) by the progress display.

MQTT v5 is used so that a broker refusal is visible: Mosquitto answers a publish its ACL
denies with PUBACK reason "Not authorized", counted as rejected, never as acknowledged.

A link with ``commands`` also obeys downlink commands: it subscribes ``ctrl/<device>/#`` once
connected, answers each command on its response topic (``commands.DeviceCommands`` decides),
publishes the state reports a command causes, and the shard runs the state changes a command
scheduled (a strike locking again after its unlock duration).
"""

from __future__ import annotations

import heapq
import logging
import selectors
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from f2lib.backoff import Backoff
from f2lib.contracts.topics import device_command_filter
from f2lib.mqtt import ClientTls, paho_client
from infra.tools.simulator.commands import DeviceCommands
from infra.tools.simulator.payloads import Message, MessageStream

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 30
MISC_INTERVAL = 1.0
MAX_SELECT_WAIT = 0.25
CLOSE_WAIT = 2.0
BATCH_WINDOW = 0.002  # publish what is due within 2 ms in one pass
MAX_PENDING_READS = 64
RECONNECT_BACKOFF = Backoff(base_s=1.0, cap_s=30.0)  # after a lost connection


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where and how devices connect: the broker's mTLS listener and the CA that signed it."""

    host: str
    port: int
    ca_cert: Path | None = None
    qos: int = 1
    keepalive: int = KEEPALIVE_SECONDS
    connect_timeout: float = 10.0
    max_inflight: int = 100


@dataclass(frozen=True, slots=True)
class AckedMessage:
    """A message the broker acknowledged (PUBACK, reason success)."""

    device_id: str
    topic: str
    timestamp: str
    measurements: int


@dataclass
class LinkCounters:
    """One device's figures; written by its shard thread only."""

    sent: int = 0  # handed to the client (QoS 1: kept until acknowledged, also over reconnects)
    acked: int = 0  # QoS 1: PUBACK with success
    rejected: int = 0  # QoS 1: PUBACK with a failure reason (e.g. not authorized)
    written: int = 0  # QoS 0: written to the socket (no acknowledgement exists)
    dropped: int = 0  # QoS 0 while disconnected, or refused by the client
    connects: int = 0
    disconnects: int = 0
    replies: int = 0  # command replies handed to the client (not counted in sent)


@dataclass
class DeviceLink:
    """One device's paho client, its message stream, schedule and counters."""

    device_id: str
    model: str
    stream: MessageStream
    cert_path: Path
    key_path: Path
    ca_path: Path
    endpoint: MqttEndpoint
    interval: float  # seconds between messages
    quota: int | None = None  # messages to send, None for no limit
    record_acks: bool = True
    counters: LinkCounters = field(default_factory=LinkCounters)
    acked_messages: list[AckedMessage] = field(default_factory=list)
    connected: bool = False
    refused: str | None = None  # why the broker or TLS refused the device, when it did
    last_error: str | None = None
    pending: dict[int, Message] = field(default_factory=dict)
    client: Any = None
    retry_at: float = 0.0
    reconnect_attempts: int = 0  # since the last successful connection
    closing: bool = False
    commands: DeviceCommands | None = None  # set: the device obeys downlink commands
    listening: bool = False  # subscribed to its commands (SUBACK granted)

    def __post_init__(self) -> None:
        client = paho_client(
            self.device_id,
            tls=ClientTls(self.ca_path, self.cert_path, self.key_path),
            max_inflight=self.endpoint.max_inflight,
        )
        client.connect_timeout = self.endpoint.connect_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    # --- state ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.quota is not None and self.counters.sent >= self.quota

    @property
    def outstanding(self) -> int:
        return len(self.pending)

    def may_reconnect(self, now: float) -> bool:
        """After a lost connection (never after a refusal, nor while closing), with backoff."""
        return (
            not self.closing
            and self.refused is None
            and self.counters.connects > 0
            and now >= self.retry_at
        )

    # --- paho callbacks (run in the shard thread) -----------------------------------------
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.refused = f"broker refused the connection: {reason}"
            self.connected = False
            logger.warning("device %s: %s", self.device_id, self.refused)
            return
        self.connected = True
        self.counters.connects += 1
        self.reconnect_attempts = 0
        logger.debug("device %s connected", self.device_id)
        if self.commands is not None:
            client.subscribe(device_command_filter(self.device_id), qos=1)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected:
            self.counters.disconnects += 1
        elif self.counters.connects == 0 and self.refused is None and not self.closing:
            # Closed before the first CONNACK: a refused certificate shows this way in TLS 1.3.
            self.refused = f"the broker closed the connection before CONNACK: {reason}"
        self.connected = False
        self.listening = False
        if not self.closing:
            self.last_error = f"disconnected: {reason}"
        logger.info("device %s disconnected: %s", self.device_id, reason)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        if self.endpoint.qos == 0:
            self.counters.written += 1
            return
        message = self.pending.pop(mid, None)
        if message is None:
            return
        if reason.is_failure:
            self.counters.rejected += 1
            self.last_error = f"publish on {message.topic} refused: {reason}"
            logger.warning("device %s: %s", self.device_id, self.last_error)
            return
        self.counters.acked += 1
        if self.record_acks:
            self.acked_messages.append(
                AckedMessage(self.device_id, message.topic, message.timestamp, message.measurements)
            )

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        self.listening = not any(reason.is_failure for reason in reasons)
        if not self.listening:
            logger.warning("device %s: command subscription refused: %s", self.device_id, reasons)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self.commands is None:
            return
        answer = self.commands.handle(message.topic, bytes(message.payload), message.properties)
        if answer is None:
            return
        properties = None
        if answer.correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = answer.correlation
        client.publish(answer.topic, answer.payload, qos=1, properties=properties)
        self.counters.replies += 1
        for report in answer.reports:
            self._send(report)

    def run_timers(self, now: float) -> None:
        """Publish the state reports of the command timers due by ``now``."""
        if self.commands is not None:
            for report in self.commands.due(now):
                self._send(report)

    @property
    def next_timer(self) -> float | None:
        return self.commands.next_due() if self.commands is not None else None

    # --- actions (shard thread, or the connecting thread before the shard starts) ----------
    def connect(self) -> None:
        """TCP + TLS handshake and CONNECT (blocking); CONNACK is read by the shard."""
        self.client.connect(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=self.endpoint.keepalive,
            clean_start=True,
        )

    def reconnect(self, now: float) -> None:
        self.reconnect_attempts += 1
        self.retry_at = now + RECONNECT_BACKOFF.delay(self.reconnect_attempts)
        try:
            self.client.reconnect()
        except (OSError, ssl.SSLError) as exc:
            self.last_error = f"reconnect failed: {exc}"
            logger.info("device %s: %s", self.device_id, self.last_error)

    def publish(self) -> None:
        self._send(self.stream.next_message())

    def _send(self, message: Message) -> None:
        qos = self.endpoint.qos
        info = self.client.publish(message.topic, message.payload, qos=qos)
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
        )
        if not queued:
            self.counters.dropped += 1
            return
        self.counters.sent += 1
        if qos > 0:
            self.pending[info.mid] = message

    def disconnect(self) -> None:
        """Send DISCONNECT (paho then closes the socket); a no-op without a socket."""
        if self.client.socket() is not None:
            self.client.disconnect()


class Shard(threading.Thread):
    """One thread driving many device links: schedule, publish, network I/O, reconnects."""

    def __init__(
        self, name: str, links: Sequence[DeviceLink], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.links = list(links)
        self.clock = clock
        self.publishing = threading.Event()
        self.stop_publishing = threading.Event()
        self.finish = threading.Event()  # disconnect every link, flush, and end the thread
        self.error: BaseException | None = None
        self._selector = selectors.DefaultSelector()
        self._registered: dict[int, tuple[Any, int, int]] = {}
        self._timed: set[int] = set()  # links with command timers pending

    # --- socket bookkeeping ------------------------------------------------------------------
    def _sync_selector(self, indices: Iterable[int]) -> None:
        """Follow the clients' sockets (they change on reconnect) and their wish to write.

        Only ``indices`` are looked at: the links touched since the last call (a full sweep
        runs once a second), so an iteration costs what happened in it, not the shard's size.
        """
        touched = sorted(set(indices))
        sockets = {index: self.links[index].client.socket() for index in touched}
        for index in touched:  # drop closed or replaced sockets before registering new ones
            current = self._registered.get(index)
            if current is not None and sockets[index] is not current[0]:
                del self._registered[index]
                self._selector.unregister(current[1])
        for index in touched:
            sock = sockets[index]
            if sock is None:
                continue
            events = selectors.EVENT_READ | (
                selectors.EVENT_WRITE if self.links[index].client.want_write() else 0
            )
            current = self._registered.get(index)
            if current is None:
                fd = sock.fileno()
                if fd >= 0:
                    self._selector.register(fd, events, index)
                    self._registered[index] = (sock, fd, events)
            elif current[2] != events:
                self._selector.modify(current[1], events, index)
                self._registered[index] = (sock, current[1], events)

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the fleet; the thread must not die silently
            logger.exception("shard %s failed", self.name)
            self.error = exc
        finally:
            self._selector.close()

    def _run(self) -> None:
        everyone = range(len(self.links))
        schedule: list[tuple[float, int]] = []
        started = False
        closing_since: float | None = None
        last_misc = self.clock()
        dirty: set[int] = set(everyone)
        while True:
            now = self.clock()
            if self.finish.is_set() and closing_since is None:
                closing_since = now
                for link in self.links:
                    link.closing = True
                    link.disconnect()
                dirty.update(everyone)
            if closing_since is not None and (
                now - closing_since > CLOSE_WAIT
                or all(
                    link.client.socket() is None or not link.client.want_write()
                    for link in self.links
                )
            ):
                break
            if self.publishing.is_set() and not started:
                started = True
                for index, link in enumerate(self.links):
                    # spread the first messages over one interval (phase from the device's RNG)
                    phase = link.stream.rng.random() * link.interval
                    heapq.heappush(schedule, (now + phase, index))
            publishing = started and not self.stop_publishing.is_set() and closing_since is None
            # publish everything due now or within the batching window
            while publishing and schedule and schedule[0][0] <= now + BATCH_WINDOW:
                due, index = heapq.heappop(schedule)
                link = self.links[index]
                if link.done or link.refused:
                    continue
                link.publish()
                dirty.add(index)
                jitter = link.stream.rng.uniform(0.8, 1.2)
                heapq.heappush(schedule, (max(due + link.interval * jitter, now), index))
            next_timer = self._run_timers(now, dirty)
            self._sync_selector(dirty)
            dirty.clear()
            wait = MAX_SELECT_WAIT if closing_since is None else 0.05
            if publishing and schedule:
                wait = min(wait, max(schedule[0][0] - now, 0.0))
            if next_timer is not None:
                wait = min(wait, max(next_timer - now, 0.0))
            for key, mask in self._selector.select(wait):
                index = key.data
                link = self.links[index]
                dirty.add(index)
                if mask & selectors.EVENT_READ:
                    self._check(link, link.client.loop_read())
                    # TLS may hold decrypted records select() cannot see: drain them now
                    for _ in range(MAX_PENDING_READS):
                        if not self._ssl_pending(link):
                            break
                        self._check(link, link.client.loop_read())
                if mask & selectors.EVENT_WRITE and link.client.socket() is not None:
                    self._check(link, link.client.loop_write())
                if link.next_timer is not None:
                    self._timed.add(index)
            now = self.clock()
            if now - last_misc >= MISC_INTERVAL:
                last_misc = now
                dirty.update(everyone)
                for link in self.links:
                    if link.client.socket() is not None:
                        link.client.loop_misc()
                    elif link.may_reconnect(now):
                        link.reconnect(now)

    def _run_timers(self, now: float, dirty: set[int]) -> float | None:
        """Run the command timers due by ``now``; the monotonic time of the next one."""
        upcoming: float | None = None
        for index in sorted(self._timed):
            link = self.links[index]
            link.run_timers(now)
            dirty.add(index)
            due = link.next_timer
            if due is None:
                self._timed.discard(index)
            elif upcoming is None or due < upcoming:
                upcoming = due
        return upcoming

    @staticmethod
    def _ssl_pending(link: DeviceLink) -> bool:
        sock = link.client.socket()
        pending = getattr(sock, "pending", None)
        return bool(sock is not None and pending is not None and pending() > 0)

    @staticmethod
    def _check(link: DeviceLink, rc: MQTTErrorCode) -> None:
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            link.last_error = f"network: {mqtt.error_string(rc)}"
            logger.debug("device %s: %s", link.device_id, link.last_error)
