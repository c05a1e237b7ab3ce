"""OpenFaaS function ``sink``: decoded measurements in, rows in ``iot_measurements`` out.

Body: the Kafka connector's batch (a JSON array of ``{"topic", "partition", "offset", "key",
"value"}``, ``value`` a Measurement) or one Measurement (OpenFaaS's per-message connector).
Each record is validated with the shared Measurement model; invalid ones go to
``DEAD_LETTER_TOPIC`` (stage ``sink``) and the rest are written in one transaction (COPY into a
staging table, one INSERT ... ON CONFLICT DO NOTHING on the natural key); 200 after commit.
Records marked ``f2-reprocess`` (``make reprocess``, the element's ``headers``) overwrite the
rows with the same natural key instead (ON CONFLICT DO UPDATE), in a transaction of their own.

Status: 200 ``{"records", "inserted", "duplicates", "dead_letters"}`` (plus ``"updated"`` and
``"unchanged"`` when the batch held reprocess records: rows replaced, and rows equal already);
400 malformed batch; 405 not a POST; 500 misconfigured; 503 database or Kafka unavailable
(retry).
Config (env): KAFKA_BOOTSTRAP (dead letters), DEAD_LETTER_TOPIC, SINK_WRITE_MODE (copy|insert),
DB_CONNECT_TIMEOUT_SECONDS, KAFKA_SEND_TIMEOUT_SECONDS,
KAFKA_BOOTSTRAP_TIMEOUT_SECONDS; secret ``timeseries-dsn`` (a libpq DSN)
from /var/openfaas/secrets or $F2_SECRETS_DIR.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import psycopg2
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.batchfn import Lazy, handle_batch
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import DEAD_LETTER_TOPIC, SINK_STAGE, DeadLetter, dump_json
from f2lib.errors import JSON_DECODE_ERRORS, ConfigError
from f2lib.kafka import KafkaClient, Outgoing, make_producer, send_all
from f2lib.metrics import function_metrics
from f2lib.models import Measurement, validation_summary
from f2lib.secrets import SecretStore

from .timeseries import TimescaleSink

logger = logging.getLogger(__name__)

INVALID_REASON = "invalid_measurement"


class SinkConfig(BaseSettings):
    """The sink function's settings: environment variables plus the ``timeseries-dsn`` secret."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str
    kafka_client: KafkaClient = "confluent"
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    sink_write_mode: Literal["copy", "insert"] = "copy"
    db_connect_timeout_seconds: int = 5
    kafka_send_timeout_seconds: float = 30.0
    kafka_bootstrap_timeout_seconds: float = 10.0
    timeseries_dsn: SecretStr

    @classmethod
    def load(cls, secrets: SecretStore | None = None) -> SinkConfig:
        secrets = secrets or SecretStore()
        try:
            return cls(timeseries_dsn=secrets.get("timeseries-dsn"))
        except ValidationError as exc:
            raise ConfigError(f"sink configuration is invalid: {exc}") from exc


def split(
    records: list[ConnectorRecord],
) -> tuple[list[Measurement], list[Measurement], list[DeadLetter]]:
    """Valid measurements to insert, valid ones to overwrite with (reprocess records), and the
    dead letters of the invalid ones."""
    valid: list[Measurement] = []
    overwrite: list[Measurement] = []
    dead: list[DeadLetter] = []
    for record in records:
        value = record.value
        try:
            if isinstance(value, str):
                value = json.loads(value)
            if isinstance(value, dict):
                measurement = Measurement.from_value(value)
            else:
                measurement = Measurement.model_validate(value)
            (overwrite if record.marks.overwrite else valid).append(measurement)
        except ValidationError as exc:
            error = validation_summary(exc)
        except JSON_DECODE_ERRORS as exc:
            error = f"record value is not JSON: {exc}"
        else:
            continue
        logger.info(
            "dead-lettering invalid measurement topic=%s partition=%s offset=%s: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
        )
        dead.append(DeadLetter(record, SINK_STAGE, INVALID_REASON, error, record.key))
    return valid, overwrite, dead


class SinkFunction:
    """The sink function's long-lived parts: one TimescaleSink per serving thread, a producer."""

    def __init__(
        self,
        config: SinkConfig,
        sink_factory: Callable[[], TimescaleSink],
        producer_factory: Callable[[], Any],
    ) -> None:
        self.config = config
        self._sink_factory = sink_factory
        self._producer_factory = producer_factory
        self._local = threading.local()
        self._producer: Any = None
        self._producer_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: SinkConfig) -> SinkFunction:
        dsn = config.timeseries_dsn.get_secret_value()
        timeout = config.db_connect_timeout_seconds

        def connect() -> Any:
            return psycopg2.connect(dsn, connect_timeout=timeout, application_name="f2pipe-sink")

        return cls(
            config,
            lambda: TimescaleSink(connect, write_mode=config.sink_write_mode),
            lambda: make_producer(
                config.kafka_bootstrap,
                client=config.kafka_client,
                client_id="f2pipe-sink",
                bootstrap_timeout_ms=int(config.kafka_bootstrap_timeout_seconds * 1000),
            ),
        )

    @property
    def sink(self) -> TimescaleSink:
        """This thread's sink: its connection stays open across invocations."""
        sink: TimescaleSink | None = getattr(self._local, "sink", None)
        if sink is None:
            sink = self._local.sink = self._sink_factory()
        return sink

    @property
    def producer(self) -> Any:
        """The Kafka producer, made when the first dead letter needs it."""
        if self._producer is None:
            with self._producer_lock:
                if self._producer is None:
                    self._producer = self._producer_factory()
        return self._producer

    def process(self, records: list[ConnectorRecord]) -> dict[str, int]:
        """Store the valid measurements, dead-letter the others; returns after both are durable."""
        valid, overwrite, dead = split(records)
        result = self.sink.write(valid)
        replaced = self.sink.overwrite(overwrite)
        if dead:
            items: list[Outgoing] = [
                (self.config.dead_letter_topic, d.key, dump_json(d.to_value())) for d in dead
            ]
            send_all(self.producer, items, timeout=self.config.kafka_send_timeout_seconds)
        metrics = function_metrics()
        metrics.received(len(records))
        metrics.rows_written(result.inserted + replaced.inserted, result.duplicates)
        metrics.rows_overwritten(replaced.updated, replaced.unchanged)
        metrics.emitted("stored", result.inserted + result.duplicates + len(overwrite))
        metrics.emitted("dead_letter", len(dead))
        metrics.observe_end_to_end(m.time for m in valid)
        counts = {
            "records": len(records),
            "inserted": result.inserted + replaced.inserted,
            "duplicates": result.duplicates,
            "dead_letters": len(dead),
        }
        if overwrite:
            counts.update(updated=replaced.updated, unchanged=replaced.unchanged)
        return counts


_function: Lazy[SinkFunction] = Lazy(lambda: SinkFunction.from_config(SinkConfig.load()))


def get_function() -> SinkFunction:
    """The process's SinkFunction, built on first use (not at import)."""
    return _function.get()


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return handle_batch(event, get_function, "sink")
