"""OpenFaaS function ``decode``: raw F2 records in, decoded measurements and dead letters out.

Body: the Kafka connector's batch (a JSON array of ``{"topic", "partition", "offset", "key",
"value"}``, ``value`` a raw record) or one raw record (OpenFaaS's per-message connector, with
``X-Topic``/``X-Kafka-*`` headers). Parameters of every device in the batch are read in one
query (TTL cache); each measurement goes to ``DECODED_TOPIC`` keyed ``f2-<mac>``, each bad
record to ``DEAD_LETTER_TOPIC``; 200 only after Kafka acknowledged them all. A redriven or
reprocessed record (its ``f2-redrive``/``f2-reprocess`` headers in the element's ``headers``)
is decoded with its device's parameters read afresh, and its marks go on as Kafka headers of
its measurements and in its dead letter.

Status: 200 ``{"records", "measurements", "dead_letters"}``; 400 malformed batch; 405 not a
POST; 500 misconfigured; 503 Kafka or the device database unavailable (retry).
Config (env): KAFKA_BOOTSTRAP, DECODED_TOPIC, DEAD_LETTER_TOPIC, PARAMS_CACHE_TTL_SECONDS,
PARAMS_NEGATIVE_TTL_SECONDS, DB_CONNECT_TIMEOUT_SECONDS, KAFKA_SEND_TIMEOUT_SECONDS,
KAFKA_BOOTSTRAP_TIMEOUT_SECONDS;
secret ``devices-dsn`` (a libpq DSN) from /var/openfaas/secrets or $F2_SECRETS_DIR.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.batchfn import Lazy, handle_batch
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import DEAD_LETTER_TOPIC, DECODED_TOPIC, dump_json
from f2lib.errors import ConfigError
from f2lib.kafka import KafkaClient, Outgoing, make_producer, send_all
from f2lib.metrics import function_metrics
from f2lib.secrets import SecretStore

from .decoding import decode_batch, devices_of
from .params import DeviceParameterStore

logger = logging.getLogger(__name__)


class DecodeConfig(BaseSettings):
    """The decode function's settings: environment variables plus the ``devices-dsn`` secret."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str
    kafka_client: KafkaClient = "confluent"
    decoded_topic: str = DECODED_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    params_cache_ttl_seconds: float = 60.0
    params_negative_ttl_seconds: float = 5.0
    db_connect_timeout_seconds: int = 5
    kafka_send_timeout_seconds: float = 30.0
    kafka_bootstrap_timeout_seconds: float = 10.0
    devices_dsn: SecretStr

    @classmethod
    def load(cls, secrets: SecretStore | None = None) -> DecodeConfig:
        secrets = secrets or SecretStore()
        try:
            return cls(devices_dsn=secrets.get("devices-dsn"))
        except ValidationError as exc:
            raise ConfigError(f"decode configuration is invalid: {exc}") from exc


class DecodeFunction:
    """The decode function's long-lived parts: the parameter store and the Kafka producer."""

    def __init__(self, config: DecodeConfig, store: DeviceParameterStore, producer: Any) -> None:
        self.config = config
        self.store = store
        self.producer = producer

    @classmethod
    def from_config(cls, config: DecodeConfig) -> DecodeFunction:
        dsn = config.devices_dsn.get_secret_value()
        timeout = config.db_connect_timeout_seconds

        def connect() -> Any:
            return psycopg2.connect(dsn, connect_timeout=timeout, application_name="f2pipe-decode")

        store = DeviceParameterStore(
            connect,
            ttl_seconds=config.params_cache_ttl_seconds,
            negative_ttl_seconds=config.params_negative_ttl_seconds,
        )
        producer = make_producer(
            config.kafka_bootstrap,
            client=config.kafka_client,
            client_id="f2pipe-decode",
            bootstrap_timeout_ms=int(config.kafka_bootstrap_timeout_seconds * 1000),
        )
        return cls(config, store, producer)

    def process(self, records: list[ConnectorRecord]) -> dict[str, int]:
        """Decode the records and produce the results; returns once Kafka acknowledged them."""
        params = self.store.get(devices_of(records), fresh=devices_of(records, marked_only=True))
        result = decode_batch(records, params)
        items: list[Outgoing] = [
            (self.config.decoded_topic, m.key, m.to_json_bytes(), marks.kafka_headers())
            for m, marks in result.marked()
        ]
        items += [
            (self.config.dead_letter_topic, d.key, dump_json(d.to_value()))
            for d in result.dead_letters
        ]
        send_all(self.producer, items, timeout=self.config.kafka_send_timeout_seconds)
        metrics = function_metrics()
        metrics.received(len(records))
        metrics.emitted("measurement", len(result.measurements))
        metrics.emitted("dead_letter", len(result.dead_letters))
        metrics.decode_failed(d.reason for d in result.dead_letters)
        return {
            "records": len(records),
            "measurements": len(result.measurements),
            "dead_letters": len(result.dead_letters),
        }


_function: Lazy[DecodeFunction] = Lazy(lambda: DecodeFunction.from_config(DecodeConfig.load()))


def get_function() -> DecodeFunction:
    """The process's DecodeFunction, built on first use (not at import)."""
    return _function.get()


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return handle_batch(event, get_function, "decode")
