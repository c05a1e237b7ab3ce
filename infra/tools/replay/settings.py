"""Where redrive and reprocess connect: the variables ``make -s env`` prints, read once."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.contracts.functions import CONNECTOR_GROUP_PREFIX
from f2lib.contracts.records import (
    COMMAND_REPLIES_TOPIC,
    DEAD_LETTER_TOPIC,
    DECODED_TOPIC,
    RAW_TOPIC,
)


class ReplayConfig(BaseSettings):
    """KAFKA_BOOTSTRAP, DEVICES_DSN, TIMESERIES_DSN and the topic and group names."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP")
    devices_dsn: SecretStr | None = Field(None, alias="DEVICES_DSN")
    timeseries_dsn: SecretStr | None = Field(None, alias="TIMESERIES_DSN")
    raw_topic: str = Field(RAW_TOPIC, alias="RAW_TOPIC")
    decoded_topic: str = Field(DECODED_TOPIC, alias="DECODED_TOPIC")
    dead_letter_topic: str = Field(DEAD_LETTER_TOPIC, alias="DEAD_LETTER_TOPIC")
    replies_topic: str = Field(COMMAND_REPLIES_TOPIC, alias="COMMAND_REPLIES_TOPIC")
    # The connector's consumer groups (f2-connector-<function>): how reprocess sees its records
    # through decode and sink.
    group_prefix: str = Field(CONNECTOR_GROUP_PREFIX, alias="CONNECTOR_GROUP_PREFIX")
    connect_timeout_s: float = Field(5.0, alias="F2_REPLAY_CONNECT_TIMEOUT_SECONDS", gt=0)
    # Where the runs write their Prometheus textfile (<tool>.prom); none when unset.
    metrics_dir: Path | None = Field(None, alias="F2_METRICS_DIR")
    log_level: str = Field("INFO", alias="LOG_LEVEL")

    def metrics_file(self, tool: str, override: Path | None) -> Path | None:
        if override is not None:
            return override
        return self.metrics_dir / f"{tool}.prom" if self.metrics_dir else None
