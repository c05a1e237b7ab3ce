"""The replica's MQTT v5 connection: publishes commands at QoS 1 and hears every device's reply.

One paho client per replica, shared by its request threads. It subscribes ``ctrl-resp/#`` (not
shared: every replica hears every reply and keeps those it waits for), so a request registers
its command id with ``expect`` *before* publishing and then waits on the returned waiter;
``on_message`` only parses and hands the reply over (paho's loop must not block). Replies
nobody waits for are left to the bridge, which forwards ``ctrl-resp/#`` to Kafka.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from f2lib.contracts.commands import CommandReply
from f2lib.contracts.topics import REPLY_FILTER, parse_reply_topic
from f2lib.errors import BrokerError, ReplyError, TopicError

logger = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Where and as whom the link connects, and how long it waits for the broker."""

    host: str
    port: int
    username: str
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    publish_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class HeardReply:
    """A device's reply and when this replica heard it."""

    device_id: str
    reply: CommandReply
    received_at: dt.datetime


class ReplyWaiter:
    """One request waiting for the reply to its command."""

    def __init__(self, command_id: str, device_id: str) -> None:
        self.command_id = command_id
        self.device_id = device_id
        self._heard: HeardReply | None = None
        self._event = threading.Event()

    def resolve(self, heard: HeardReply) -> None:
        if not self._event.is_set():
            self._heard = heard
            self._event.set()

    def wait(self, timeout: float) -> HeardReply | None:
        self._event.wait(max(0.0, timeout))
        return self._heard


def make_client(config: LinkConfig, password: SecretStr) -> mqtt.Client:
    """A paho MQTT v5 client for the internal listener, with a client id unique to the process."""
    client_id = f"f2-command-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(config.username, password.get_secret_value())
    client.reconnect_delay_set(1, 10)
    client.enable_logger(logging.getLogger("command.paho"))
    return client


class CommandLink:
    """Publishes commands and correlates replies by command id."""

    def __init__(self, client: mqtt.Client, config: LinkConfig, clock: Clock = utc_now) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters: dict[str, ReplyWaiter] = {}
        self._acks: dict[int, ReasonCode] = {}
        self._connected = False
        self._subscribed = threading.Event()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CommandLink:
        """Connect and subscribe; BrokerError when not subscribed within the connect timeout."""
        try:
            self._client.connect_async(
                self._config.host, self._config.port, keepalive=self._config.keepalive_s
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach the broker: {exc.__class__.__name__}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(self._config.connect_timeout_s):
            self.close()
            raise BrokerError(
                f"not subscribed to {REPLY_FILTER} on {self._config.host}:{self._config.port}"
                f" within {self._config.connect_timeout_s:g}s"
            )
        logger.info(
            "command link up on %s:%d as %s",
            self._config.host,
            self._config.port,
            self._config.username,
        )
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._connected and self._subscribed.is_set()

    # -- requests ----------------------------------------------------------------------------

    def expect(self, command_id: str, device_id: str) -> ReplyWaiter:
        waiter = ReplyWaiter(command_id, device_id)
        with self._lock:
            self._waiters[command_id] = waiter
        return waiter

    def forget(self, command_id: str) -> None:
        with self._lock:
            self._waiters.pop(command_id, None)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str,
        correlation: str,
        expiry_s: int,
    ) -> None:
        """QoS 1 with response topic, correlation data and message expiry; returns after a
        successful PUBACK. BrokerError when not connected, refused, or not acknowledged in time
        (nothing is queued for later while disconnected)."""
        if not self.ready:
            raise BrokerError("not connected to the broker")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = response_topic
        properties.CorrelationData = correlation.encode("utf-8")
        properties.MessageExpiryInterval = max(1, expiry_s)
        properties.ContentType = "application/json"
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish not queued: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(self._config.publish_timeout_s)
        except (ValueError, RuntimeError) as exc:
            raise BrokerError(f"publish failed: {exc}") from exc
        with self._lock:
            reason = self._acks.pop(info.mid, None)
        if not info.is_published():
            raise BrokerError(f"no PUBACK within {self._config.publish_timeout_s:g}s")
        if reason is not None and reason.is_failure:
            raise BrokerError(f"the broker refused the command: {reason}")

    # -- paho callbacks (its network thread) --------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the command link: %s", reason_code)
            return
        with self._lock:
            self._connected = True
        client.subscribe(REPLY_FILTER, qos=1)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
        self._subscribed.clear()
        logger.warning("command link lost (%s); paho reconnects", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            logger.error("subscription %s refused: %s", REPLY_FILTER, reason_codes)
            return
        self._subscribed.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._acks[mid] = reason_code

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        heard_at = self._clock()
        try:
            device_id = parse_reply_topic(message.topic)
            reply = CommandReply.parse(bytes(message.payload))
        except (TopicError, ReplyError, UnicodeDecodeError) as exc:
            logger.info("ignoring a message that is not a reply: %s", exc)
            return
        correlation = getattr(message.properties, "CorrelationData", None)
        if correlation and correlation != reply.command_id.encode():
            logger.info("reply of %s: correlation data differs from its command id", device_id)
            return
        with self._lock:
            waiter = self._waiters.get(reply.command_id)
        if waiter is not None and waiter.device_id == device_id:
            waiter.resolve(HeardReply(device_id, reply, heard_at))
