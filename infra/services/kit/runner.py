"""The one ``main()`` sequence of the long-running services: bridge, connector, autoscaler, aclsync.

``run_service`` configures logging once, reads the service's secret (exit 2 when it cannot),
turns SIGTERM/SIGINT into a stop event, serves ``/metrics``, ``/healthz`` and ``/livez``
(``OpsServer``)
for the whole run, builds the service, runs it until the stop event, closes what it opened,
and returns the process's exit code. ``connect_with_retry`` waits for a dependency at start.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from f2lib.backoff import Backoff
from f2lib.errors import ConfigError, F2PipeError
from f2lib.secrets import SecretStore
from infra.services.kit.ops_http import HealthCheck, OpsServer

logger = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServiceConfig(Protocol):
    """What the runner reads from a service's settings: log level and the ops endpoint."""

    @property
    def liveness_grace_s(self) -> float: ...  # unhealthy this long: /livez asks for a restart

    @property
    def log_level(self) -> str: ...

    @property
    def http_host(self) -> str: ...

    @property
    def http_port(self) -> int | None: ...  # None: no ops endpoint


@dataclass(frozen=True, slots=True)
class Service:
    """A built service: its loop (returns an exit code, None for 0), its health, its closers.

    ``run(stop)`` blocks until ``stop`` is set; the closers run afterwards in order, also when
    ``run`` raised.
    """

    run: Callable[[threading.Event], int | None]
    health: HealthCheck
    closers: Sequence[Callable[[], object]] = ()


class _Starting:
    """``/healthz`` before the service is built: unhealthy, ``starting``."""

    def __init__(self) -> None:
        self.service: Service | None = None

    def __call__(self) -> tuple[bool, Mapping[str, Any]]:
        if self.service is None:
            return False, {"starting": True}
        return self.service.health()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def stop_on_signals(signals: Sequence[signal.Signals] = STOP_SIGNALS) -> threading.Event:
    """An event set by any of ``signals`` (handlers installed from the main thread)."""
    stop = threading.Event()
    for signum in signals:
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_service(
    name: str,
    config: ServiceConfig,
    read_secret: Callable[[SecretStore], S],
    build: Callable[[S, threading.Event], Service | None],
    registry: CollectorRegistry | None = None,
    *,
    secrets: SecretStore | None = None,
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
) -> int:
    """Run a service from its settings to its exit code (0 ok, 1 failed, 2 bad secret).

    ``build(secret, stop)`` makes the service (it may wait for its dependencies, and returns
    None when stopped first); the ops endpoint answers ``starting`` meanwhile. A project error
    (``F2PipeError``) out of ``build`` or ``run`` is logged and exits 1.
    """
    configure_logging(config.log_level)
    try:
        secret = read_secret(secrets or SecretStore())
    except ConfigError as exc:
        logger.error("%s: %s", name, exc)
        return EXIT_CONFIG
    stop = stop_on_signals(signals)
    health = _Starting()
    ops = None
    if config.http_port is not None:
        ops = OpsServer(
            config.http_host,
            config.http_port,
            registry or CollectorRegistry(),
            health,
            liveness_grace_s=config.liveness_grace_s,
        )
        ops.start()
    try:
        service = build(secret, stop)
        if service is None:
            return EXIT_OK
        health.service = service
        try:
            code = service.run(stop)
        finally:
            for close in service.closers:
                try:
                    close()
                except Exception as exc:  # one failed close must not skip the others
                    logger.warning("%s: closing %r failed: %s", name, close, exc)
        return EXIT_OK if code is None else code
    except F2PipeError as exc:
        logger.error("%s: %s", name, exc)
        return EXIT_FAILED
    finally:
        if ops is not None:
            ops.stop()


def connect_with_retry(
    connect: Callable[[], T], stop: threading.Event, *, what: str, backoff: Backoff
) -> T | None:
    """``connect()`` retried (any exception) on ``backoff``; None when ``stop`` is set first."""

    def report(exc: Exception, delay: float) -> None:
        logger.warning("%s not ready: %s; retry in %.0fs", what, exc, delay)

    return backoff.retry(connect, stop, on_retry=report)
