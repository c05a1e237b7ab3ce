"""Connector settings, read once from the environment at the entry point."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.backoff import Backoff
from f2lib.contracts.functions import CONNECTOR_GROUP_PREFIX
from f2lib.contracts.records import DEAD_LETTER_TOPIC
from f2lib.kafka import KafkaClient
from f2lib.secrets import SecretStore
from infra.services.kit.ops_http import DEFAULT_LIVENESS_GRACE_S

GATEWAY_PASSWORD_SECRET = "basic-auth-password"  # noqa: S105 (a secret's name)


class ConnectorConfig(BaseSettings):
    """Environment of ``python -m infra.services.connector`` (names in the aliases)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    gateway_url: str = Field("http://127.0.0.1:8080", alias="GATEWAY_URL")
    gateway_username: str = Field("admin", alias="GATEWAY_USERNAME")
    # Direct mode: the functions from this static list (infra/services/connector/static.py),
    # each invoked at its own URL; no gateway, no gateway password. Unset: the gateway mode.
    functions_file: Path | None = Field(None, alias="CONNECTOR_FUNCTIONS_FILE")
    kafka_bootstrap: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP")
    # The consumer's and dead-letter producer's client (f2lib.kafka; docs/benchmarks.md).
    kafka_client: KafkaClient = Field(
        "confluent", validation_alias=AliasChoices("CONNECTOR_KAFKA_CLIENT", "KAFKA_CLIENT")
    )
    dead_letter_topic: str = Field(DEAD_LETTER_TOPIC, alias="DEAD_LETTER_TOPIC")
    group_prefix: str = Field(CONNECTOR_GROUP_PREFIX, alias="CONNECTOR_GROUP_PREFIX")
    batch_max_records: int = Field(500, alias="CONNECTOR_BATCH_MAX_RECORDS", ge=1)
    batch_max_bytes: int = Field(1_048_576, alias="CONNECTOR_BATCH_MAX_BYTES", ge=1)
    linger_ms: int = Field(50, alias="CONNECTOR_LINGER_MS", ge=0)
    # The broker answers a fetch once this much is there or the wait is over: a few fetches
    # of many records rather than one per record (the broker's CPU per message, infra/tools/bench/).
    fetch_min_bytes: int = Field(65_536, alias="CONNECTOR_FETCH_MIN_BYTES", ge=1)
    # 100 ms, not 25: an idle consumer asks every fetch_max_wait_ms, and the broker spent
    # 0.16 core on the three groups' idle fetches at 25 ms, 0.10 at 100, 0.06 at 500
    # (docs/benchmarks.md); under load fetches end on fetch_min_bytes well before the wait.
    fetch_max_wait_ms: int = Field(100, alias="CONNECTOR_FETCH_MAX_WAIT_MS", ge=0)
    connect_timeout_s: float = Field(5.0, alias="CONNECTOR_CONNECT_TIMEOUT_SECONDS", gt=0)
    invoke_timeout_s: float = Field(65.0, alias="CONNECTOR_INVOKE_TIMEOUT_SECONDS", gt=0)
    retry_initial_s: float = Field(0.5, alias="CONNECTOR_RETRY_INITIAL_SECONDS", gt=0)
    retry_max_s: float = Field(30.0, alias="CONNECTOR_RETRY_MAX_SECONDS", gt=0)
    refresh_s: float = Field(15.0, alias="CONNECTOR_REFRESH_SECONDS", gt=0)
    # Batches in flight per function replica: the template serves 4 requests at once, and a
    # replica's Kafka flush or database commit then overlaps the next batch's work.
    concurrency_per_replica: int = Field(4, alias="CONNECTOR_CONCURRENCY_PER_REPLICA", ge=1)
    max_concurrency: int = Field(16, alias="CONNECTOR_MAX_CONCURRENCY", ge=1)
    # Delivered offsets are committed at most this often; 0 (the default) commits after every
    # batch. A revoke or a stop commits at once; a crash redelivers at most this much more.
    # Two A/B pairs of `make bench` (0 vs 200 ms, 2 cores shared with other tenants) showed no
    # difference beyond the noise in CPU per message or throughput, so the default stays 0.
    commit_interval_ms: int = Field(0, alias="CONNECTOR_COMMIT_INTERVAL_MS", ge=0)
    revoke_timeout_s: float = Field(30.0, alias="CONNECTOR_REVOKE_TIMEOUT_SECONDS", ge=0)
    # A consumer that died without leaving its group (kill -9, a lost host) keeps its partitions
    # until this passes (kafka-python's default is 45 s; brokers accept 6 s and more).
    session_timeout_ms: int = Field(10_000, alias="CONNECTOR_SESSION_TIMEOUT_MS", ge=6_000)
    # Static group membership (KIP-345): a connector restarted with the same id takes its dead
    # predecessor's place in each group at once, without waiting for the session timeout.
    # Unique per running connector; unset (the default) is dynamic membership. A static member
    # never leaves its groups, even when stopped cleanly: its partitions wait for its return
    # or for the session timeout.
    instance_id: str | None = Field(
        None, alias="CONNECTOR_INSTANCE_ID", pattern=r"^[A-Za-z0-9._-]{1,200}$"
    )
    lag_interval_s: float = Field(5.0, alias="CONNECTOR_LAG_INTERVAL_SECONDS", gt=0)
    http_host: str = Field("0.0.0.0", alias="CONNECTOR_HTTP_HOST")
    http_port: int = Field(9103, alias="CONNECTOR_HTTP_PORT", ge=0, le=65535)
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Unhealthy this long, /livez answers 503 and a supervisor restarts the process.
    liveness_grace_s: float = Field(
        DEFAULT_LIVENESS_GRACE_S, alias="F2_LIVENESS_GRACE_SECONDS", gt=0
    )

    @property
    def linger_s(self) -> float:
        return self.linger_ms / 1000.0

    def delivery_backoff(self) -> Backoff:
        """Between attempts to deliver a batch (jittered: a function's workers spread out)."""
        return Backoff(base_s=self.retry_initial_s, cap_s=self.retry_max_s, jitter=0.1)

    def connect_backoff(self) -> Backoff:
        """Between attempts to reach Kafka at start: from 1 s up to the same cap."""
        return Backoff(base_s=1.0, cap_s=self.retry_max_s)

    @property
    def direct(self) -> bool:
        """True when the functions come from ``functions_file`` rather than a gateway."""
        return self.functions_file is not None

    def password(self, store: SecretStore) -> SecretStr:
        """Gateway password: the secret file ``basic-auth-password`` (never the environment)."""
        return store.get(GATEWAY_PASSWORD_SECRET)

    def credentials(self, store: SecretStore) -> SecretStr | None:
        """What the mode needs: the gateway password, or nothing in the direct mode."""
        return None if self.direct else self.password(store)
