"""Autoscaler settings, read once from the environment at the entry point."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.contracts.functions import CONNECTOR_GROUP_PREFIX, DEFAULT_COOLDOWN_SECONDS
from f2lib.secrets import SecretStore
from infra.services.autoscaler.policy import PolicyConfig
from infra.services.kit.ops_http import DEFAULT_LIVENESS_GRACE_S

GATEWAY_PASSWORD_SECRET = "basic-auth-password"  # noqa: S105 (a secret's name)


class AutoscalerConfig(BaseSettings):
    """Environment of ``python -m infra.services.autoscaler`` (names in the aliases)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    gateway_url: str = Field("http://127.0.0.1:8080", alias="GATEWAY_URL")
    gateway_username: str = Field("admin", alias="GATEWAY_USERNAME")
    kafka_bootstrap: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP")
    group_prefix: str = Field(CONNECTOR_GROUP_PREFIX, alias="AUTOSCALER_GROUP_PREFIX")
    interval_s: float = Field(5.0, alias="AUTOSCALER_INTERVAL_SECONDS", gt=0)
    cooldown_s: float = Field(DEFAULT_COOLDOWN_SECONDS, alias="AUTOSCALER_COOLDOWN_SECONDS", ge=0)
    drain_horizon_s: float = Field(60.0, alias="AUTOSCALER_DRAIN_HORIZON_SECONDS", gt=0)
    rate_window_s: float = Field(30.0, alias="AUTOSCALER_RATE_WINDOW_SECONDS", gt=0)
    lookahead_s: float = Field(30.0, alias="AUTOSCALER_LOOKAHEAD_SECONDS", ge=0)
    replica_cap: int = Field(0, alias="AUTOSCALER_REPLICA_CAP", ge=0)
    dry_run: bool = Field(False, alias="AUTOSCALER_DRY_RUN")
    http_host: str = Field("0.0.0.0", alias="AUTOSCALER_HTTP_HOST")
    http_port: int = Field(9104, alias="AUTOSCALER_HTTP_PORT", ge=0, le=65535)
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Unhealthy this long, /livez answers 503 and a supervisor restarts the process.
    liveness_grace_s: float = Field(
        DEFAULT_LIVENESS_GRACE_S, alias="F2_LIVENESS_GRACE_SECONDS", gt=0
    )

    def policy(self) -> PolicyConfig:
        return PolicyConfig(
            cooldown_s=self.cooldown_s,
            drain_horizon_s=self.drain_horizon_s,
            rate_window_s=self.rate_window_s,
            lookahead_s=self.lookahead_s,
        )

    def password(self, store: SecretStore) -> SecretStr:
        """Gateway password: the secret file ``basic-auth-password`` (never the environment)."""
        return store.get(GATEWAY_PASSWORD_SECRET)
