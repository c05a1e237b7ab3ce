"""The command audit trail and the registry look-up, in the device-management database.

Schema: sql/devices/030_device_commands.sql (``device_command``, the ``device_components``
view, ``device_command_record_reply``). Connections come from a small pool shared by the
replica's request threads; a connection that failed is closed, not reused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from f2lib.errors import StoreError

logger = logging.getLogger(__name__)

COLUMNS = (
    "command_id",
    "device_id",
    "connector",
    "connector_mode",
    "component",
    "action",
    "params",
    "requested_by",
    "requested_at",
    "expires_at",
    "status",
    "result",
    "published_at",
    "answered_at",
    "answered_via",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM device_command"  # noqa: S608 (constant columns)


@dataclass(frozen=True, slots=True)
class Target:
    """What the registry says of a command's target: the device's status, and the connector's
    mode when the device's template has the component at that connector (else None)."""

    device_status: str
    connector_mode: str | None


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A new device_command row."""

    command_id: str
    requested_by: str
    requested_at: dt.datetime
    status: str
    device_id: str | None = None
    connector: str | None = None
    connector_mode: str | None = None
    component: str | None = None
    action: str | None = None
    params: Mapping[str, Any] | None = None
    expires_at: dt.datetime | None = None
    result: Mapping[str, Any] | None = None


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the API answers it: times in ISO 8601, the id as text."""
    answer: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif key == "command_id":
            value = str(value)
        answer[key] = value
    return answer


class CommandStore:
    """``device_command`` rows and the target look-up, over a pool of connections."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    def from_dsn(
        cls, dsn: str, *, max_connections: int = 8, connect_timeout: int = 5
    ) -> CommandStore:
        pool = psycopg2.pool.ThreadedConnectionPool(
            0,
            max_connections,
            dsn,
            connect_timeout=connect_timeout,
            application_name="f2pipe-command",
        )
        return cls(pool)

    @contextmanager
    def _cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        try:
            conn = self._pool.getconn()
        except (psycopg2.Error, psycopg2.pool.PoolError) as exc:
            raise StoreError(f"device database unavailable: {exc.__class__.__name__}") from exc
        broken = False
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except psycopg2.Error as exc:
            broken = True
            raise StoreError(f"device database query failed: {exc.__class__.__name__}") from exc
        finally:
            self._pool.putconn(conn, close=broken or bool(conn.closed))

    def target(self, device_id: str, connector: str, component: str) -> Target | None:
        """None when the device is unknown."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT d.status, dc.connector_mode FROM device d"
                " LEFT JOIN device_components dc ON dc.device_id = d.device_id"
                " AND dc.connector = %s AND dc.component = %s"
                " WHERE d.device_id = %s",
                (connector, component, device_id),
            )
            found = cur.fetchone()
        return Target(found[0], found[1]) if found else None

    def insert(self, row: CommandRow) -> None:
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO device_command (command_id, device_id, connector, connector_mode,"
                " component, action, params, requested_by, requested_at, expires_at, status,"
                " result) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row.command_id,
                    row.device_id,
                    row.connector,
                    row.connector_mode,
                    row.component,
                    row.action,
                    json.dumps(dict(row.params or {})),
                    row.requested_by,
                    row.requested_at,
                    row.expires_at,
                    row.status,
                    json.dumps(dict(row.result)) if row.result is not None else None,
                ),
            )

    def mark_sent(self, command_id: str, published_at: dt.datetime) -> None:
        """pending -> sent (a reply recorded in between is kept)."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE device_command SET published_at = %s,"
                " status = CASE WHEN status = 'pending' THEN 'sent' ELSE status END"
                " WHERE command_id = %s",
                (published_at, command_id),
            )

    def mark_failed(self, command_id: str, error: str, message: str) -> None:
        """pending -> failed, with why the broker did not take it."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE device_command SET status = 'failed', result = %s"
                " WHERE command_id = %s AND status = 'pending'",
                (json.dumps({"error": error, "message": message}), command_id),
            )

    def record_reply(
        self,
        command_id: str,
        device_id: str,
        result: str,
        detail: str | None,
        answered_at: dt.datetime,
        via: str,
    ) -> str:
        """``recorded``, ``duplicate``, ``unknown_command`` or ``wrong_device`` (see the SQL)."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT device_command_record_reply(%s, %s, %s, %s, %s, %s)",
                (command_id, device_id, result, detail, answered_at, via),
            )
            found = cur.fetchone()
        return str(found[0]) if found else "unknown_command"

    def get(self, command_id: str) -> dict[str, Any] | None:
        with self._cursor() as cur:
            cur.execute(_SELECT + " WHERE command_id = %s", (command_id,))
            found = cur.fetchone()
        return dict(zip(COLUMNS, found, strict=True)) if found else None

    def list_for_device(
        self, device_id: str, *, limit: int, before: str | None = None
    ) -> list[dict[str, Any]]:
        """The device's commands, newest first; ``before`` a command id to page from."""
        query = _SELECT + " WHERE device_id = %s"
        args: list[Any] = [device_id]
        if before is not None:
            query += (
                " AND (requested_at, command_id) < (SELECT requested_at, command_id"
                " FROM device_command WHERE command_id = %s)"
            )
            args.append(before)
        query += " ORDER BY requested_at DESC, command_id DESC LIMIT %s"
        args.append(limit)
        with self._cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def close(self) -> None:
        self._pool.closeall()
