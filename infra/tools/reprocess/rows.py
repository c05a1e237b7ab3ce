"""The rows a reprocess may change: read before it sends, and again after the sink stored them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from f2lib.contracts.records import RawRecord
from f2lib.errors import StoreError
from f2lib.models import Measurement, parse_timestamp
from sink.timeseries import DEFAULT_TABLE, NATURAL_KEY, VALUE_COLUMNS, NaturalKey, natural_key

logger = logging.getLogger(__name__)

Values = tuple[Any, ...]


def device_times(values: Iterable[bytes | None]) -> tuple[datetime, datetime] | None:
    """The first and last payload timestamp of raw record values (unreadable ones skipped)."""
    times = []
    for value in values:
        try:
            raw = RawRecord.model_validate_json(value or b"")
            payload = json.loads(raw.payload_bytes())
            times.append(parse_timestamp(payload["timestamp"]))
        except (ValueError, KeyError, TypeError):
            continue
    return (min(times), max(times)) if times else None


@dataclass(frozen=True, slots=True)
class RowChanges:
    """What the sink did to the rows of the re-decoded measurements."""

    updated: int = 0
    unchanged: int = 0
    inserted: int = 0
    missing: int = 0  # re-decoded, yet no row: should not happen once the sink committed


def compare(
    before: Mapping[NaturalKey, Values],
    after: Mapping[NaturalKey, Values],
    keys: Iterable[NaturalKey],
) -> RowChanges:
    updated = unchanged = inserted = missing = 0
    for key in set(keys):
        if key not in after:
            missing += 1
        elif key not in before:
            inserted += 1
        elif before[key] == after[key]:
            unchanged += 1
        else:
            updated += 1
    return RowChanges(updated, unchanged, inserted, missing)


class RowReader:
    """Reads rows of the timeseries table by device and time, or by natural key."""

    def __init__(self, connect: Callable[[], Any], table: str = DEFAULT_TABLE) -> None:
        self._connect = connect
        selected = sql.SQL(", ").join(map(sql.Identifier, (*NATURAL_KEY, *VALUE_COLUMNS)))
        target = sql.Identifier(table)
        key = sql.SQL(", ").join(map(sql.Identifier, NATURAL_KEY))
        self._between = sql.SQL(
            "SELECT {selected} FROM {target} WHERE device_id = %s AND time BETWEEN %s AND %s"
        ).format(selected=selected, target=target)
        self._by_key = sql.SQL(
            "SELECT {selected} FROM {target} JOIN (VALUES %s) AS k ({key}) USING ({key})"
        ).format(selected=selected, target=target, key=key)

    def between(self, device_id: str, first: datetime, last: datetime) -> dict[NaturalKey, Values]:
        def query(conn: Any, cur: Any) -> list[Any]:
            cur.execute(self._between.as_string(conn), (device_id, first, last))
            return list(cur.fetchall())

        return self._read(query)

    def by_key(self, keys: Iterable[NaturalKey]) -> dict[NaturalKey, Values]:
        wanted = list(set(keys))
        if not wanted:
            return {}

        def query(conn: Any, cur: Any) -> list[Any]:
            found = execute_values(
                cur,
                self._by_key.as_string(conn),
                wanted,
                template="(%s, %s, %s::timestamptz, %s)",
                page_size=1000,
                fetch=True,
            )
            return list(found)

        return self._read(query)

    def _read(self, query: Callable[[Any, Any], list[Any]]) -> dict[NaturalKey, Values]:
        try:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    rows = query(conn, cur)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            raise StoreError(f"reading the stored rows failed: {exc}") from exc
        width = len(NATURAL_KEY)
        return {_key(row[:width]): tuple(row[width:]) for row in rows}


def _key(values: Any) -> NaturalKey:
    device_id, topic, moment, component_id = values
    return (device_id, topic, moment, component_id)


def keys_of(measurements: Iterable[Measurement]) -> list[NaturalKey]:
    return [natural_key(m) for m in measurements]
