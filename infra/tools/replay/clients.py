"""The kafka-python clients of a replay run: one bootstrap, short timeouts, no auto-commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer

from f2lib.kafka import make_producer


@dataclass(frozen=True, slots=True)
class KafkaClients:
    """Makes the admin client, consumers and producer a redrive or reprocess needs."""

    bootstrap: str
    timeout_s: float = 5.0
    client_id: str = "f2pipe-replay"

    @property
    def _servers(self) -> list[str]:
        return self.bootstrap.split(",")

    def admin(self) -> Any:
        timeout_ms = int(self.timeout_s * 1000)
        return KafkaAdminClient(
            bootstrap_servers=self._servers,
            client_id=self.client_id,
            request_timeout_ms=max(timeout_ms, 5000),
            bootstrap_timeout_ms=timeout_ms,
        )

    def consumer(self, group_id: str | None = None) -> Any:
        """A consumer that commits only when told to (``group_id`` None: it never commits)."""
        return KafkaConsumer(
            bootstrap_servers=self._servers,
            client_id=self.client_id,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
        )

    def producer(self) -> Any:
        return make_producer(self.bootstrap, client_id=self.client_id)
