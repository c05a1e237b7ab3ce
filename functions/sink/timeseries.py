"""TimescaleSink: writes a batch of measurements to ``iot_measurements`` in one transaction.

Default write mode ``copy``: COPY the batch straight into the table under a savepoint, then
commit. COPY cannot skip conflicts, so when the batch holds a row already stored (a redelivered
batch) the COPY fails with a unique violation; the transaction rolls back to the savepoint and
COPYs the batch into a temporary staging table instead, then runs one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on the natural key -- COPY's speed for new rows,
deduplication for redeliveries. Mode ``insert`` sends one multi-row
``INSERT ... ON CONFLICT DO NOTHING`` instead, for servers where COPY FROM STDIN is not
available (PGlite over pglite-socket). The connection is kept across batches and replaced
after a connection failure; a batch is retried once on a fresh connection, which is safe
because the insert skips rows already stored.

``overwrite`` is for reprocess batches only (records marked ``f2-reprocess``): one
``INSERT ... ON CONFLICT DO UPDATE`` replaces the stored values of rows with the same natural
key, skipping rows whose values are equal already, and reports the rows new, updated and
unchanged (read in the same transaction before the upsert).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql
from psycopg2.extras import execute_values

from f2lib.errors import StoreError
from f2lib.models import MEASUREMENT_COLUMNS, Measurement

logger = logging.getLogger(__name__)

WriteMode = Literal["copy", "insert"]
DEFAULT_TABLE = "iot_measurements"
NATURAL_KEY = ("device_id", "topic", "time", "component_id")
# What an overwrite replaces: every column but the natural key (and ingested_at, set to now()).
VALUE_COLUMNS = tuple(c for c in MEASUREMENT_COLUMNS if c not in NATURAL_KEY)
T = TypeVar("T")
NaturalKey = tuple[str, str, datetime, str]


@dataclass(frozen=True)
class WriteResult:
    """How many rows of a batch were new, and how many were already stored."""

    inserted: int
    duplicates: int


@dataclass(frozen=True)
class OverwriteResult:
    """How the rows of an overwriting (reprocess) batch ended: new, changed, or equal already."""

    inserted: int
    updated: int
    unchanged: int


def natural_key(m: Measurement) -> NaturalKey:
    return (m.device_id, m.topic, m.time, m.component_id)


def last_per_key(measurements: Sequence[Measurement]) -> list[Measurement]:
    """One measurement per natural key, the last one of the batch (an upsert may touch a row
    only once per statement), in the order of their first appearance."""
    chosen: dict[NaturalKey, Measurement] = {}
    for m in measurements:
        chosen[natural_key(m)] = m
    return list(chosen.values())


def _values(m: Measurement) -> tuple[Any, ...]:
    return tuple(getattr(m, c) for c in VALUE_COLUMNS)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _text(value: str | None) -> str:
    return _NULL if value is None else value.translate(_COPY_ESCAPES)


def copy_payload(measurements: Sequence[Measurement]) -> io.StringIO:
    """The batch as COPY text-format rows, columns in MEASUREMENT_COLUMNS order."""
    lines = [
        "\t".join(
            (
                m.time.isoformat(),
                _text(m.device_id),
                _text(m.connector_mode),
                _text(m.connector),
                _text(m.component_type),
                _text(m.component_id),
                _NULL if m.value is None else repr(m.value),
                _text(m.value_text),
                _text(m.unit),
                _text(m.topic),
            )
        )
        for m in measurements
    ]
    lines.append("")
    return io.StringIO("\n".join(lines))


class TimescaleSink:
    """Writes measurement batches to the timeseries database, duplicate-free."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        write_mode: WriteMode = "copy",
        table: str = DEFAULT_TABLE,
    ) -> None:
        self._connect = connect
        self.write_mode = write_mode
        self.table = table
        self._conn: Any = None
        self._staging_ready = False
        columns = sql.SQL(", ").join(map(sql.Identifier, MEASUREMENT_COLUMNS))
        target = sql.Identifier(table)
        staging = sql.Identifier(f"{table}_staging")
        conflict = sql.SQL("ON CONFLICT ({}) DO NOTHING").format(
            sql.SQL(", ").join(map(sql.Identifier, NATURAL_KEY))
        )
        self._create_staging = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
            "(LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(staging=staging, target=target)
        self._copy = sql.SQL("COPY {staging} ({columns}) FROM STDIN").format(
            staging=staging, columns=columns
        )
        self._copy_direct = sql.SQL("COPY {target} ({columns}) FROM STDIN").format(
            target=target, columns=columns
        )
        self._insert_from_staging = sql.SQL(
            "INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} {conflict}"
        ).format(target=target, columns=columns, staging=staging, conflict=conflict)
        self._insert_values = sql.SQL(
            "INSERT INTO {target} ({columns}) VALUES %s {conflict}"
        ).format(target=target, columns=columns, conflict=conflict)
        key_columns = sql.SQL(", ").join(map(sql.Identifier, NATURAL_KEY))
        self._select_existing = sql.SQL(
            "SELECT {selected} FROM {target} AS t JOIN (VALUES %s) AS k ({key}) USING ({key})"
        ).format(
            selected=sql.SQL(", ").join(
                sql.SQL("t.{}").format(sql.Identifier(c)) for c in (*NATURAL_KEY, *VALUE_COLUMNS)
            ),
            target=target,
            key=key_columns,
        )
        stored = sql.SQL(", ").join(
            sql.SQL("{}.{}").format(target, sql.Identifier(c)) for c in VALUE_COLUMNS
        )
        offered = sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in VALUE_COLUMNS
        )
        self._upsert_values = sql.SQL(
            "INSERT INTO {target} ({columns}) VALUES %s ON CONFLICT ({key}) DO UPDATE SET {set},"
            " ingested_at = now() WHERE ({stored}) IS DISTINCT FROM ({offered})"
        ).format(
            target=target,
            columns=columns,
            key=key_columns,
            set=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in VALUE_COLUMNS
            ),
            stored=stored,
            offered=offered,
        )

    def write(self, measurements: Sequence[Measurement]) -> WriteResult:
        """Store the batch in one transaction; returns after commit. Raises StoreError."""
        if not measurements:
            return WriteResult(0, 0)
        inserted = self._transaction(lambda: self._write_once(measurements), len(measurements))
        return WriteResult(inserted, len(measurements) - inserted)

    def overwrite(self, measurements: Sequence[Measurement]) -> OverwriteResult:
        """Store a reprocess batch in one transaction, replacing the values of rows with the
        same natural key; returns after commit. Raises StoreError."""
        if not measurements:
            return OverwriteResult(0, 0, 0)
        return self._transaction(lambda: self._overwrite_once(measurements), len(measurements))

    def _transaction(self, once: Callable[[], T], count: int) -> T:
        for attempt in (1, 2):
            try:
                return once()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    raise StoreError(f"timeseries database unavailable: {exc}") from exc
                logger.warning("sink write failed (%s); retrying on a new connection", exc)
            except psycopg2.Error as exc:
                self._rollback()
                raise StoreError(f"writing {count} measurements failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _overwrite_once(self, measurements: Sequence[Measurement]) -> OverwriteResult:
        batch = last_per_key(measurements)
        conn = self._connection()
        with conn.cursor() as cur:
            keys = [natural_key(m) for m in batch]
            found = execute_values(
                cur,
                self._select_existing.as_string(conn),
                keys,
                template="(%s, %s, %s::timestamptz, %s)",
                page_size=len(keys),
                fetch=True,
            )
            width = len(NATURAL_KEY)
            stored = {tuple(row[:width]): tuple(row[width:]) for row in found}
            new = [m for m in batch if natural_key(m) not in stored]
            changed = [m for m in batch if stored.get(natural_key(m), _values(m)) != _values(m)]
            if new or changed:
                rows = [tuple(getattr(m, c) for c in MEASUREMENT_COLUMNS) for m in new + changed]
                execute_values(cur, self._upsert_values.as_string(conn), rows, page_size=len(rows))
        conn.commit()
        return OverwriteResult(len(new), len(changed), len(measurements) - len(new) - len(changed))

    def _write_once(self, measurements: Sequence[Measurement]) -> int:
        conn = self._connection()
        with conn.cursor() as cur:
            if self.write_mode == "copy":
                inserted = self._copy_batch(conn, cur, measurements)
            else:
                rows = [tuple(getattr(m, c) for c in MEASUREMENT_COLUMNS) for m in measurements]
                execute_values(cur, self._insert_values.as_string(conn), rows, page_size=len(rows))
                inserted = int(cur.rowcount)
        conn.commit()
        return inserted

    def _copy_batch(self, conn: Any, cur: Any, measurements: Sequence[Measurement]) -> int:
        payload = copy_payload(measurements)
        cur.execute("SAVEPOINT f2_sink_copy")
        try:
            cur.copy_expert(self._copy_direct.as_string(conn), payload)
        except pg_errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT f2_sink_copy")
        else:
            return int(cur.rowcount)
        # A row of the batch is stored already: deduplicate through the staging table.
        if not self._staging_ready:
            cur.execute(self._create_staging)
            self._staging_ready = True
        payload.seek(0)
        cur.copy_expert(self._copy.as_string(conn), payload)
        cur.execute(self._insert_from_staging)
        return int(cur.rowcount)

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._conn.autocommit = False
            self._staging_ready = False
        return self._conn

    def _rollback(self) -> None:
        # The staging table may have been created in the transaction being rolled back.
        self._staging_ready = False
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
            except psycopg2.Error:
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                logger.debug("closing the sink connection failed", exc_info=True)
            self._conn = None
            self._staging_ready = False
