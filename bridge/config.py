"""Bridge settings, read once from the environment at the entry point."""

from __future__ import annotations

import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.delivery import RecoveryConfig
from f2lib.backoff import Backoff
from f2lib.contracts.records import COMMAND_REPLIES_TOPIC, DEAD_LETTER_TOPIC, RAW_TOPIC
from f2lib.kafka import KafkaClient
from f2lib.secrets import SecretStore
from infra.services.kit.ops_http import DEFAULT_LIVENESS_GRACE_S

MQTT_PASSWORD_SECRET = "mqtt-bridge-password"  # noqa: S105 (a secret name)
DEFAULT_MQTT_USERNAME = "f2-bridge"  # the internal MQTT user ``certs init`` creates
RESEND_BASE_S = 0.2
KAFKA_CONNECT_BASE_S = 1.0
# A new producer is tried this often while Kafka is away (each try waits for a bootstrap).
REBUILD_BASE_S, REBUILD_CAP_S = 0.5, 5.0
# How much longer than the delivery timeout a record may stay unanswered before the producer
# is given up on (kafka-python fails it at the delivery timeout when it still works).
STALL_MARGIN_S = 15.0


class BridgeConfig(BaseSettings):
    """Environment of ``python -m bridge`` (names in the aliases)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    mqtt_host: str = Field("127.0.0.1", alias="MQTT_HOST")
    mqtt_port: int = Field(1883, alias="MQTT_PORT")
    mqtt_username: str = Field(DEFAULT_MQTT_USERNAME, alias="MQTT_USERNAME")
    mqtt_keepalive_s: int = Field(30, alias="MQTT_KEEPALIVE_SECONDS", ge=5)
    session_expiry_s: int = Field(3600, alias="MQTT_SESSION_EXPIRY_SECONDS", ge=1)
    reconnect_min_s: int = Field(1, alias="MQTT_RECONNECT_MIN_SECONDS", ge=1)
    reconnect_max_s: int = Field(30, alias="MQTT_RECONNECT_MAX_SECONDS", ge=1)
    kafka_bootstrap: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP")
    # The producer's client (f2lib.kafka; the choice and its figures: docs/benchmarks.md).
    kafka_client: KafkaClient = Field(
        "confluent", validation_alias=AliasChoices("BRIDGE_KAFKA_CLIENT", "KAFKA_CLIENT")
    )
    raw_topic: str = Field(RAW_TOPIC, alias="RAW_TOPIC")
    dead_letter_topic: str = Field(DEAD_LETTER_TOPIC, alias="DEAD_LETTER_TOPIC")
    # 20 ms: about half the broker CPU per message of 5 ms, for +15 ms of latency (bench).
    kafka_linger_ms: int = Field(20, alias="BRIDGE_KAFKA_LINGER_MS", ge=0)
    kafka_delivery_timeout_ms: int = Field(30_000, alias="BRIDGE_KAFKA_DELIVERY_TIMEOUT_MS")
    # Unset: the delivery timeout plus STALL_MARGIN_S (bridge/delivery.py).
    kafka_stall_s: float | None = Field(None, alias="BRIDGE_KAFKA_STALL_SECONDS", gt=0)
    # A record unanswered this long while the cluster answers a probe: the producer is stuck.
    kafka_unanswered_s: float = Field(10.0, alias="BRIDGE_KAFKA_UNANSWERED_SECONDS", gt=0)
    client_id: str = Field(
        default_factory=lambda: f"f2-bridge-{socket.gethostname()}", alias="BRIDGE_CLIENT_ID"
    )
    share_group: str = Field("f2-bridge", alias="BRIDGE_SHARE_GROUP")
    topic_filter: str = Field("cmnd/#", alias="BRIDGE_TOPIC_FILTER")
    # Command replies (ctrl-resp/#) go to COMMAND_REPLIES_TOPIC when this filter is set; the
    # deployments set it, the default bridges uplink only.
    reply_filter: str = Field("", alias="BRIDGE_REPLY_FILTER")
    replies_topic: str = Field(COMMAND_REPLIES_TOPIC, alias="COMMAND_REPLIES_TOPIC")
    max_in_flight: int = Field(1000, alias="BRIDGE_MAX_IN_FLIGHT", ge=1, le=65535)
    retry_max_s: float = Field(30.0, alias="BRIDGE_RETRY_MAX_SECONDS", gt=0)
    drain_timeout_s: float = Field(20.0, alias="BRIDGE_DRAIN_TIMEOUT_SECONDS", ge=0)
    # An idle bridge learns nothing from deliveries: every this many seconds without one it asks
    # the cluster (describe cluster) so that health and the kafka connected gauge stay true.
    kafka_probe_s: float = Field(15.0, alias="BRIDGE_KAFKA_PROBE_SECONDS", ge=0)
    http_host: str = Field("0.0.0.0", alias="BRIDGE_HTTP_HOST")
    http_port: int = Field(9102, alias="BRIDGE_HTTP_PORT", ge=0, le=65535)
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Unhealthy this long, /livez answers 503 and a supervisor restarts the process.
    liveness_grace_s: float = Field(
        DEFAULT_LIVENESS_GRACE_S, alias="F2_LIVENESS_GRACE_SECONDS", gt=0
    )

    def resend_backoff(self) -> Backoff:
        """Between sends of a record Kafka did not acknowledge."""
        return Backoff(base_s=RESEND_BASE_S, cap_s=self.retry_max_s)

    def recovery(self) -> RecoveryConfig:
        """When a producer is given up on, and the pauses before sending again / a new one."""
        stall = self.kafka_stall_s or self.kafka_delivery_timeout_ms / 1000 + STALL_MARGIN_S
        return RecoveryConfig(
            stall_s=stall,
            resend_backoff=self.resend_backoff(),
            unanswered_s=self.kafka_unanswered_s,
            rebuild_backoff=Backoff(
                base_s=REBUILD_BASE_S, cap_s=min(REBUILD_CAP_S, self.retry_max_s)
            ),
        )

    def kafka_connect_backoff(self) -> Backoff:
        """Between attempts to reach Kafka at start."""
        return Backoff(base_s=KAFKA_CONNECT_BASE_S, cap_s=self.retry_max_s)

    def password(self, store: SecretStore) -> SecretStr:
        """The MQTT password: the secret file ``mqtt-bridge-password`` (never the environment)."""
        return store.get(MQTT_PASSWORD_SECRET)
