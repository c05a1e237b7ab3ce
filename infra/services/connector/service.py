"""The connector: finds the functions that want Kafka topics and keeps one consumer per function."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from f2lib.errors import GatewayError
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.delivery import BatchDelivery, DeadLetterWriter, Invoker
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.targets import FunctionTarget, targets_of
from infra.services.connector.worker import ConsumerFactory, FunctionConsumer
from infra.services.kit.openfaas import FunctionStatus

logger = logging.getLogger(__name__)


class FunctionGateway(Invoker, Protocol):
    """Where the connector finds and invokes functions: ``OpenFaaSClient`` (a gateway) or
    ``StaticFunctionGateway`` (a static list, each function at its own URL)."""

    def functions(self) -> list[FunctionStatus]: ...


class Connector:
    """Reconciles consumers with the gateway's function list every ``refresh_s``.

    A new annotated function gets a consumer; a function whose topics changed gets a new one;
    a replica change resizes its concurrency; a function gone has its consumer stopped. A
    failed listing keeps what runs.
    """

    def __init__(
        self,
        config: ConnectorConfig,
        gateway: FunctionGateway,
        dead_letters: DeadLetterWriter,
        consumer_factory: ConsumerFactory,
        metrics: ConnectorMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._dead_letters = dead_letters
        self._factory = consumer_factory
        self.metrics = metrics
        self._clock = clock
        self._consumers: dict[str, FunctionConsumer] = {}
        self._lock = threading.Lock()
        self._last_listing: float | None = None

    def run(self, stop: threading.Event) -> None:
        """Refresh until ``stop`` is set, then stop every consumer (their batches committed)."""
        try:
            while not stop.is_set():
                self.refresh()
                stop.wait(self._config.refresh_s)
        finally:
            self.stop()

    def refresh(self) -> None:
        try:
            targets = targets_of(self._gateway.functions())
        except GatewayError as exc:
            self.metrics.discovery_errors.inc()
            logger.warning("function discovery failed: %s; keeping current consumers", exc)
            return
        self._last_listing = self._clock()
        self.reconcile(targets)

    def reconcile(self, targets: list[FunctionTarget]) -> None:
        wanted = {target.name: target for target in targets}
        retired: list[FunctionConsumer] = []
        with self._lock:
            for name in list(self._consumers):
                current = self._consumers[name]
                target = wanted.get(name)
                if target is None or target.topics != current.topics or not current.alive():
                    why = "gone" if target is None else "changed or stopped"
                    logger.info("stopping consumer of %s (%s)", name, why)
                    current.request_stop()
                    retired.append(self._consumers.pop(name))
        for consumer in retired:
            consumer.stop()  # its batches finish and commit before a successor joins the group
        with self._lock:
            for name, target in wanted.items():
                if name in self._consumers:
                    self._consumers[name].update(target)
                else:
                    self._consumers[name] = self._consumer_for(target).start()
            self.metrics.functions.set(len(self._consumers))

    def _consumer_for(self, target: FunctionTarget) -> FunctionConsumer:
        delivery = BatchDelivery(
            target.name,
            self._gateway,
            self._dead_letters,
            self.metrics,
            self._config.delivery_backoff(),
        )
        return FunctionConsumer(target, self._config, delivery, self.metrics, self._factory)

    def stop(self) -> None:
        with self._lock:
            consumers, self._consumers = list(self._consumers.values()), {}
        for consumer in consumers:
            consumer.request_stop()
        for consumer in consumers:
            consumer.stop()
        self.metrics.functions.set(0)

    def functions(self) -> list[str]:
        with self._lock:
            return sorted(self._consumers)

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        """Healthy when the functions were listed recently and every consumer thread is running."""
        with self._lock:
            consumers = {name: c.healthy() for name, c in self._consumers.items()}
        listed = self._last_listing
        fresh = listed is not None and self._clock() - listed < 3 * self._config.refresh_s + 5
        healthy = fresh and all(consumers.values())
        return healthy, {"gateway": fresh, "consumers": consumers}
