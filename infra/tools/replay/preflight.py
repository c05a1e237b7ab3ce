"""Checks before a redrive or reprocess sends anything: Kafka and both databases answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import psycopg2
from kafka.errors import KafkaError
from psycopg2.extensions import parse_dsn
from pydantic import SecretStr

from f2lib.errors import ReplayRefusedError

logger = logging.getLogger(__name__)

Connect = Callable[[str, float], Any]


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a libpq DSN, never its password."""
    try:
        parts = parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "an unparsable DSN"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"


def pg_connect(dsn: str, timeout: float) -> Any:
    return psycopg2.connect(
        dsn, connect_timeout=max(1, int(timeout)), application_name="f2pipe-replay"
    )


def check_database(
    name: str, dsn: SecretStr | None, timeout: float, connect: Connect = pg_connect
) -> None:
    """ReplayRefusedError unless the database ``name`` (e.g. DEVICES_DSN) answers a query."""
    if dsn is None:
        raise ReplayRefusedError(f'{name} is not set (eval "$(make -s env)" sets it)')
    text = dsn.get_secret_value()
    try:
        conn = connect(text, timeout)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()
    except psycopg2.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReplayRefusedError(
            f"{name} ({describe_dsn(text)}) is unreachable: {first_line}"
        ) from exc
    logger.debug("%s (%s) answers", name, describe_dsn(text))


def check_kafka(admin_factory: Callable[[], Any], bootstrap: str, topics: Iterable[str]) -> None:
    """ReplayRefusedError unless Kafka answers and every topic of ``topics`` exists."""
    try:
        admin = admin_factory()
    except KafkaError as exc:
        raise ReplayRefusedError(f"Kafka at {bootstrap} is unreachable: {exc}") from exc
    try:
        existing = set(admin.list_topics())
    except KafkaError as exc:
        raise ReplayRefusedError(f"Kafka at {bootstrap} is unreachable: {exc}") from exc
    finally:
        admin.close()
    missing = sorted(set(topics) - existing)
    if missing:
        raise ReplayRefusedError(f"Kafka at {bootstrap} has no topic {', '.join(missing)}")


def check_device(
    dsn: SecretStr | None, device_id: str, timeout: float, connect: Connect = pg_connect
) -> None:
    """ReplayRefusedError unless ``device_parameters`` has rows for the device: without them
    every record would be dead-lettered again."""
    if dsn is None:
        raise ReplayRefusedError('DEVICES_DSN is not set (eval "$(make -s env)" sets it)')
    try:
        conn = connect(dsn.get_secret_value(), timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM device_parameters WHERE device_id = %s", (device_id,)
                )
                row = cur.fetchone()
        finally:
            conn.close()
    except psycopg2.Error as exc:
        raise ReplayRefusedError(f"the device parameters cannot be read: {exc}") from exc
    if not row or not row[0]:
        raise ReplayRefusedError(
            f"{device_id} has no decoding parameters (not provisioned, or its template has no"
            " data points): its records would only be dead-lettered again"
        )
