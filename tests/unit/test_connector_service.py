"""The connector's reconciliation of consumers with the gateway's function list."""

from __future__ import annotations

import threading
from typing import Any

from f2lib.errors import GatewayError
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.service import Connector
from infra.services.connector.targets import FunctionTarget
from infra.services.kit.openfaas import FunctionStatus
from tests.waiting import wait_for


class IdleConsumer:
    """A Kafka consumer that is assigned nothing and fetches nothing."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.closed = threading.Event()

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topics = topics

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[Any, Any]:
        self.closed.wait(timeout_ms / 1000)
        return {}

    def commit(self, offsets: Any) -> None:
        pass

    def close(self, autocommit: bool = True) -> None:
        self.closed.set()


class ListingGateway:
    def __init__(self) -> None:
        self.targets: list[FunctionTarget] | None = []

    def functions(self) -> list[FunctionStatus]:
        if self.targets is None:
            raise GatewayError("gateway down")
        return [
            FunctionStatus(t.name, t.replicas, annotations={"topic": ",".join(t.topics)})
            for t in self.targets
        ]


def test_refresh__starts_resizes_restarts_and_stops_consumers_as_the_listing_changes() -> None:
    made: list[IdleConsumer] = []

    def factory(group: str, client_id: str) -> IdleConsumer:
        made.append(IdleConsumer(group))
        return made[-1]

    gateway = ListingGateway()
    metrics = ConnectorMetrics()
    connector = Connector(
        ConnectorConfig(CONNECTOR_REVOKE_TIMEOUT_SECONDS=1, CONNECTOR_CONCURRENCY_PER_REPLICA=1),
        gateway,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        factory,
        metrics,
    )
    try:
        gateway.targets = [FunctionTarget("decode", ("raw_iot_data",), 1)]
        connector.refresh()
        assert connector.functions() == ["decode"]
        wait_for(lambda: len(made) == 1)
        assert connector.health()[0] is True

        gateway.targets = [FunctionTarget("decode", ("raw_iot_data",), 4)]
        connector.refresh()
        concurrency = metrics.registry.get_sample_value(
            "f2_connector_concurrency", {"function": "decode"}
        )
        assert concurrency == 4

        gateway.targets = None
        connector.refresh()
        assert connector.functions() == ["decode"], "a failed listing keeps what runs"

        gateway.targets = [FunctionTarget("decode", ("raw_iot_data", "extra"), 4)]
        connector.refresh()
        wait_for(lambda: len(made) == 2)
        assert [c.group for c in made] == ["f2-connector-decode"] * 2
        assert made[0].closed.is_set() and not made[1].closed.is_set()

        gateway.targets = []
        connector.refresh()
        assert connector.functions() == []
        assert made[1].closed.is_set()
    finally:
        connector.stop()
