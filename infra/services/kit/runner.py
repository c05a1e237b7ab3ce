"""Start-up shared by the long-running services (bridge, connector, autoscaler).

Logging configured once, a stop event set by SIGTERM/SIGINT, the service's secret read with a
clear exit on failure, and a connection retried on a backoff policy until it works or stops.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from pydantic import SecretStr

from f2lib.backoff import Backoff
from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"


class HasPassword(Protocol):
    """A service config that reads its password from the secret store."""

    log_level: str

    def password(self, store: SecretStore) -> SecretStr: ...


def start_service(config: HasPassword) -> tuple[SecretStr, threading.Event] | None:
    """Configure logging, read the password, and arm SIGTERM/SIGINT; None if the secret is bad."""
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    try:
        password = config.password(SecretStore())
    except ConfigError as exc:
        logger.error("%s", exc)
        return None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return password, stop


def connect_with_retry(
    connect: Callable[[], T], stop: threading.Event, *, what: str, backoff: Backoff
) -> T | None:
    """``connect()`` retried (any exception) on ``backoff``; None when ``stop`` is set first."""

    def report(exc: Exception, delay: float) -> None:
        logger.warning("%s not ready: %s; retry in %.0fs", what, exc, delay)

    return backoff.retry(connect, stop, on_retry=report)
