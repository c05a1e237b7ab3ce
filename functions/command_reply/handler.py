"""OpenFaaS function ``command_reply``: replies from ``iot_command_replies`` into the audit trail.

Triggered by the Kafka connector (``topic: iot_command_replies`` in stack.yml) with a batch, or
by OpenFaaS's per-message connector with one record. Each reply is recorded in its
``device_command`` row (a redelivered reply changes nothing); a record that is not a reply, a
reply for an unknown command id, or one from another device than the command's target goes to
``DEAD_LETTER_TOPIC`` with its reason. 200 only after the audit trail committed and Kafka
acknowledged the dead letters.

Status: 200 ``{"records", "recorded", "duplicates", "dead_letters"}``; 400 malformed batch;
405 not a POST; 500 misconfigured; 503 the database or Kafka unavailable (retry).
Config (env): KAFKA_BOOTSTRAP, DEAD_LETTER_TOPIC, DB_CONNECT_TIMEOUT_SECONDS,
KAFKA_SEND_TIMEOUT_SECONDS, KAFKA_BOOTSTRAP_TIMEOUT_SECONDS; secret ``devices-dsn``.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.batchfn import Lazy, handle_batch
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import DEAD_LETTER_TOPIC, DeadLetter, dump_json
from f2lib.errors import ConfigError
from f2lib.kafka import make_producer, send_all
from f2lib.metrics import FunctionMetrics, function_metrics
from f2lib.secrets import SecretStore

from .audit import ReplyAudit
from .replies import read_batch, refusal

logger = logging.getLogger(__name__)


class CommandReplyConfig(BaseSettings):
    """The function's settings: environment variables plus the ``devices-dsn`` secret."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    db_connect_timeout_seconds: int = 5
    kafka_send_timeout_seconds: float = 30.0
    kafka_bootstrap_timeout_seconds: float = 10.0
    devices_dsn: SecretStr

    @classmethod
    def load(cls, secrets: SecretStore | None = None) -> CommandReplyConfig:
        secrets = secrets or SecretStore()
        try:
            return cls(devices_dsn=secrets.get("devices-dsn"))
        except ValidationError as exc:
            raise ConfigError(f"command_reply configuration is invalid: {exc}") from exc


class CommandReplyFunction:
    """The long-lived parts: the audit trail and the dead-letter producer."""

    def __init__(
        self,
        config: CommandReplyConfig,
        audit: ReplyAudit,
        producer: Any,
        metrics: FunctionMetrics,
    ) -> None:
        self.config = config
        self.audit = audit
        self.producer = producer
        self.metrics = metrics

    @classmethod
    def from_config(cls, config: CommandReplyConfig) -> CommandReplyFunction:
        audit = ReplyAudit.from_dsn(
            config.devices_dsn.get_secret_value(),
            connect_timeout=config.db_connect_timeout_seconds,
        )
        producer = make_producer(
            config.kafka_bootstrap,
            client_id="f2pipe-command-reply",
            bootstrap_timeout_ms=int(config.kafka_bootstrap_timeout_seconds * 1000),
        )
        return cls(config, audit, producer, function_metrics())

    def process(self, records: list[ConnectorRecord]) -> dict[str, int]:
        """Record the replies, dead-letter the rest; returns once both are durable."""
        batch = read_batch(records)
        letters: list[DeadLetter] = list(batch.dead_letters)
        recorded = duplicates = 0
        for item, found in zip(batch.replies, self.audit.record(batch.replies), strict=True):
            letter = refusal(item, found.outcome)
            if letter is not None:
                letters.append(letter)
            elif found.outcome == "recorded":
                recorded += 1
                if found.requested_at is not None:
                    seconds = (item.answered_at - found.requested_at).total_seconds()
                    self.metrics.reply_received("late", seconds)
            else:
                duplicates += 1
        send_all(
            self.producer,
            [(self.config.dead_letter_topic, d.key, dump_json(d.to_value())) for d in letters],
            timeout=self.config.kafka_send_timeout_seconds,
        )
        for letter in letters:
            logger.warning(
                "reply dead-lettered: %s (key %s, %s)", letter.reason, letter.key, letter.error
            )
        self.metrics.received(len(records))
        self.metrics.emitted("stored", recorded)
        self.metrics.emitted("dead_letter", len(letters))
        self.metrics.reply_handled("recorded", recorded)
        self.metrics.reply_handled("duplicate", duplicates)
        self.metrics.reply_handled("dead_letter", len(letters))
        return {
            "records": len(records),
            "recorded": recorded,
            "duplicates": duplicates,
            "dead_letters": len(letters),
        }


_function: Lazy[CommandReplyFunction] = Lazy(
    lambda: CommandReplyFunction.from_config(CommandReplyConfig.load())
)


def get_function() -> CommandReplyFunction:
    """The process's CommandReplyFunction, built on first use (not at import)."""
    return _function.get()


def handle(event: Any, context: Any) -> dict[str, Any]:
    """The python3-http entry point."""
    return handle_batch(event, get_function, "command-reply")
