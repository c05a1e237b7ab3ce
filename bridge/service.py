"""The bridge: MQTT messages become Kafka records; each is acknowledged to the broker after Kafka's.

Flow control. The client announces MQTT v5 Receive Maximum = ``max_in_flight``, so the broker
never has more than that many unacknowledged QoS 1 messages out to this client; the rest wait in
the broker's session queue, not in this process. A semaphore of the same size guards the
hand-off from ``on_message`` to the sender thread; should it ever be full (messages of a resumed
session, QoS 0 traffic), ``on_message`` blocks, paho stops reading the socket and TCP pushes
back. Memory stays flat under bursts either way.

Failure rules. A message is acknowledged to the broker only after Kafka acknowledged its record.
A record Kafka did not acknowledge is sent again, in the order received, before any newer one;
a producer that stopped delivering is replaced (``bridge.delivery``). A message received but not
acknowledged when the process dies is redelivered by the broker to the same client id
(persistent session, clean_start=False).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

from bridge.config import BridgeConfig
from bridge.delivery import KafkaSender, PendingRecord, Producer
from bridge.metrics import BridgeMetrics
from f2lib.contracts.records import (
    BRIDGE_STAGE,
    RawRecord,
    dead_letter,
    dump_json,
    raw_record_bytes,
)
from f2lib.contracts.topics import (
    REPLY_ROOT,
    device_key,
    parse_reply_topic,
    parse_topic,
    topic_root,
)
from f2lib.errors import TopicError
from f2lib.mqtt import paho_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoutedMessage:
    """Where one MQTT message goes in Kafka: its record, or its dead letter and why."""

    kind: str
    topic: str
    key: bytes | None
    value: bytes
    reason: str | None = None
    error: str | None = None


def route_message(
    mqtt_topic: str,
    payload: bytes,
    qos: int,
    *,
    raw_topic: str,
    dead_letter_topic: str,
    replies_topic: str | None = None,
) -> RoutedMessage:
    """The bridge's verdict on one message: a raw record, or a dead letter (stage ``bridge``).

    With ``replies_topic``, a command reply (``ctrl-resp/<device>``) goes there as a raw record;
    without, only uplink topics are records.
    """
    key = device_key(mqtt_topic)
    key_bytes = key.encode() if key else None
    reply_to = replies_topic if topic_root(mqtt_topic) == REPLY_ROOT else None
    try:
        if reply_to is not None:
            parse_reply_topic(mqtt_topic, stage=BRIDGE_STAGE)
        else:
            parse_topic(mqtt_topic, stage=BRIDGE_STAGE)
    except TopicError as exc:
        record = RawRecord.from_mqtt(mqtt_topic, payload, qos)
        letter = dead_letter(
            record.model_dump(), stage=BRIDGE_STAGE, reason=exc.reason, error=str(exc), key=key
        )
        return RoutedMessage(
            "dead_letter", dead_letter_topic, key_bytes, dump_json(letter), exc.reason, str(exc)
        )
    value = raw_record_bytes(mqtt_topic, payload, qos)
    if reply_to is not None:
        return RoutedMessage("reply", reply_to, key_bytes, value)
    return RoutedMessage("raw", raw_topic, key_bytes, value)


def topic_text(raw: bytes) -> str:
    """An MQTT topic as text: UTF-8, the bytes that are not shown as escapes (``\\xff``), so
    that a malformed topic is dead-lettered under a readable name rather than lost."""
    return raw.decode("utf-8", "backslashreplace")


def make_mqtt_client(config: BridgeConfig, password: SecretStr) -> mqtt.Client:
    """A paho client for the internal listener: MQTT v5, manual acks, reconnect with backoff."""
    return paho_client(
        config.client_id,
        username=config.mqtt_username,
        password=password,
        manual_ack=True,
        reconnect_delay_s=(config.reconnect_min_s, config.reconnect_max_s),
        logger=logging.getLogger("bridge.paho"),
    )


class MqttKafkaBridge:
    """Subscribes ``$share/<group>/<filter>`` at QoS 1 and produces every message to Kafka.

    ``client`` is a paho ``Client`` made with ``manual_ack=True``; ``producer`` a kafka-python
    producer with ``acks='all'``, and ``rebuild`` makes another one when it stopped delivering.
    Both are started and stopped by this object.
    """

    def __init__(
        self,
        config: BridgeConfig,
        client: mqtt.Client,
        producer: Producer,
        metrics: BridgeMetrics,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], None] | None = None,
        rebuild: Callable[[], Producer] | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self.metrics = metrics
        self._clock = clock
        self._probe = probe
        self._kafka_heard_at = clock()
        self._kafka = KafkaSender(
            producer,
            dead_letter_topic=config.dead_letter_topic,
            metrics=metrics,
            recovery=config.recovery(),
            on_delivered=self._finish,
            on_kafka=self._set_kafka,
            rebuild=rebuild,
            probe=probe,
            clock=clock,
        )
        self.subscription = f"$share/{config.share_group}/{config.topic_filter}"
        self.subscriptions = [self.subscription] + (
            [f"$share/{config.share_group}/{config.reply_filter}"] if config.reply_filter else []
        )

        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        self._received_seq = itertools.count()
        self._in_flight = 0
        self._pending_mids: dict[tuple[int, int], int] = {}
        self._epoch = 0
        self._connects = 0
        self._mqtt_connected = False
        self._subscribed = False
        self._granted = 0
        self._kafka_ok = False
        self._kafka_was_ok = False
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._prober = threading.Thread(target=self._probe_loop, name="bridge-probe", daemon=True)

        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start sending and connect (asynchronously; paho retries until the broker answers)."""
        self._kafka.start()
        if self._probe is not None and self._config.kafka_probe_s > 0:
            self._prober.start()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._config.session_expiry_s
        properties.ReceiveMaximum = self._config.max_in_flight
        self._client.connect_async(
            self._config.mqtt_host,
            self._config.mqtt_port,
            keepalive=self._config.mqtt_keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        logger.info(
            "bridge %s connecting to mqtt %s:%d, subscription %s, max in flight %d",
            self._config.client_id,
            self._config.mqtt_host,
            self._config.mqtt_port,
            self.subscription,
            self._config.max_in_flight,
        )

    def stop(self, timeout: float | None = None) -> int:
        """Stop taking messages, flush Kafka, acknowledge what Kafka took, then disconnect.

        Returns how many received messages were left unacknowledged (the broker redelivers
        them to this client id).
        """
        timeout = self._config.drain_timeout_s if timeout is None else timeout
        deadline = self._clock() + timeout
        self._stopping.set()
        logger.info("bridge stopping: draining %d in-flight message(s)", self.in_flight)
        while self._kafka.queued() and self._clock() < deadline:
            time.sleep(0.01)
        self._kafka.flush(timeout=max(0.0, deadline - self._clock()))
        with self._lock:
            while self._in_flight > 0 and (remaining := deadline - self._clock()) > 0:
                self._drained.wait(timeout=min(remaining, 0.2))
            left = self._in_flight
        self._closed.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._kafka.close(timeout=5)
        if left:
            logger.warning(
                "bridge stopped with %d unacknowledged message(s); redelivered later", left
            )
        else:
            logger.info("bridge stopped; every received message was acknowledged")
        return left

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        """Healthy when subscribed on MQTT, Kafka's last answer was a success, and not stopping."""
        with self._lock:
            mqtt_ok = self._mqtt_connected and self._subscribed
            kafka_ok = self._kafka_ok
            in_flight = self._in_flight
        stopping = self._stopping.is_set()
        details = {"mqtt": mqtt_ok, "kafka": kafka_ok, "in_flight": in_flight, "stopping": stopping}
        return mqtt_ok and kafka_ok and not stopping, details

    def mark_kafka_ready(self) -> None:
        """Record that Kafka answered (a metadata probe at start, before any delivery)."""
        self._set_kafka(True)

    # -- MQTT callbacks (paho's network thread) -----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("mqtt connection refused: %s", reason_code)
            return
        with self._lock:
            if not flags.session_present:
                # A new session: acknowledgements owed to the old one mean nothing any more.
                self._epoch += 1
            self._mqtt_connected = True
            self._subscribed = False
            self._granted = 0
            self._connects += 1
            reconnect = self._connects > 1
        if reconnect:
            self.metrics.reconnects.labels(side="mqtt").inc()
        self.metrics.connected.labels(side="mqtt").set(1)
        logger.info(
            "mqtt connected (session present: %s); subscribing %s",
            flags.session_present,
            self.subscriptions,
        )
        for subscription in self.subscriptions:
            client.subscribe(subscription, options=SubscribeOptions(qos=1))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._mqtt_connected = False
            self._subscribed = False
        self.metrics.connected.labels(side="mqtt").set(0)
        if not self._stopping.is_set():
            logger.warning("mqtt connection lost (%s); paho reconnects with backoff", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            logger.error("subscription %s refused: %s", self.subscriptions, failed)
            return
        with self._lock:
            self._granted += 1
            self._subscribed = self._granted >= len(self.subscriptions)
        logger.info("subscribed %s (granted %s)", self.subscriptions, reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker keeps it for this session
        received = self._clock()
        self.metrics.received.inc()
        with self._lock:
            epoch = self._epoch
            if message.dup and message.qos > 0 and self._pending_mids.get((epoch, message.mid)):
                self.metrics.duplicates_skipped.inc()
                return
        if not self._take_slot():
            return
        item = self._pending_for(message, epoch, received)
        with self._lock:
            mid_key = (epoch, item.mid)
            self._pending_mids[mid_key] = self._pending_mids.get(mid_key, 0) + 1
            self._in_flight += 1
        self.metrics.in_flight.inc()
        self._kafka.submit(item)

    def _take_slot(self) -> bool:
        waited = False
        while not self._slots.acquire(timeout=0.25):
            if self._stopping.is_set():
                return False
            if not waited:
                logger.info(
                    "in-flight limit %d reached; reading paused", self._config.max_in_flight
                )
                waited = True
        return True

    def _pending_for(self, message: mqtt.MQTTMessage, epoch: int, received: float) -> PendingRecord:
        mqtt_topic = topic_text(message._topic)
        routed = route_message(
            mqtt_topic,
            bytes(message.payload),
            message.qos,
            raw_topic=self._config.raw_topic,
            dead_letter_topic=self._config.dead_letter_topic,
            replies_topic=self._config.replies_topic if self._config.reply_filter else None,
        )
        if routed.reason is not None:
            self.metrics.dead_lettered.labels(reason=routed.reason).inc()
            logger.warning("dead-lettering message on %r: %s", mqtt_topic, routed.error)
        return PendingRecord(
            mid=message.mid,
            qos=message.qos,
            epoch=epoch,
            kind=routed.kind,
            topic=routed.topic,
            key=routed.key,
            value=routed.value,
            mqtt_topic=mqtt_topic,
            received=received,
            seq=next(self._received_seq),
        )

    # -- Kafka's answers (the sender's callbacks) -------------------------------------------

    def _finish(self, item: PendingRecord) -> None:
        with self._lock:
            mid_key = (item.epoch, item.mid)
            count = self._pending_mids.get(mid_key, 0) - 1
            if count > 0:
                self._pending_mids[mid_key] = count
            else:
                self._pending_mids.pop(mid_key, None)
            same_session = item.epoch == self._epoch
        if item.qos > 0:
            if same_session:
                rc = self._client.ack(item.mid, item.qos)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self.metrics.acknowledged.inc()
                    self.metrics.ack_latency.observe(self._clock() - item.received)
                else:
                    logger.warning("ack of mid %d not sent (%s); redelivered later", item.mid, rc)
            else:
                logger.info("mid %d belongs to an ended session; no ack owed", item.mid)
        self._slots.release()
        self.metrics.in_flight.dec()
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.notify_all()

    def _probe_loop(self) -> None:
        """While no delivery answered for ``kafka_probe_s``, ask the cluster whether it is there."""
        assert self._probe is not None
        interval = self._config.kafka_probe_s
        while not self._closed.wait(min(interval, 1.0)):
            with self._lock:
                quiet = self._clock() - self._kafka_heard_at >= interval
                busy = self._in_flight > 0
            if not quiet or busy or self._stopping.is_set():
                continue
            try:
                self._probe()
            except Exception as exc:  # any failure to answer means Kafka is not usable now
                if self.health()[1]["kafka"]:
                    logger.warning("kafka does not answer while idle: %s", exc)
                self._set_kafka(False)
            else:
                self._set_kafka(True)

    def _set_kafka(self, ok: bool) -> None:
        with self._lock:
            self._kafka_heard_at = self._clock()
            changed = ok != self._kafka_ok
            recovered = ok and changed and self._kafka_was_ok
            self._kafka_ok = ok
            self._kafka_was_ok = self._kafka_was_ok or ok
        if changed:
            self.metrics.connected.labels(side="kafka").set(1 if ok else 0)
            if recovered:
                self.metrics.reconnects.labels(side="kafka").inc()
                logger.info("kafka delivers again")
