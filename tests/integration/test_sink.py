"""TimescaleSink on the real database: one transaction per batch, duplicate-free, reconnecting."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from f2lib.errors import StoreError
from f2lib.models import Measurement
from sink.timeseries import TimescaleSink, WriteMode

pytestmark = pytest.mark.integration

T0 = datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)


def new_device() -> str:
    return f"f2-{uuid.uuid4().hex[:12]}"


def measurements(device: str, n: int, **kw: Any) -> list[Measurement]:
    topic = f"cmnd/{device}/sensor-mode/J3/sensor-3"
    return [
        Measurement(
            time=T0 + timedelta(seconds=i),
            device_id=device,
            connector_mode="sensor-mode",
            connector="J3",
            component_type="sensor",
            component_id="3",
            value=20.0 + i / 10,
            unit="celsius",
            topic=topic,
            **kw,
        )
        for i in range(n)
    ]


def rows(dsn: str, device: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT time, component_type, component_id, value, value_text, unit, topic
               FROM iot_measurements WHERE device_id = %s ORDER BY time, component_id""",
            (device,),
        )
        return list(cur.fetchall())


def make_sink(dsn: str, mode: WriteMode = "copy") -> tuple[TimescaleSink, list[Any]]:
    connections: list[Any] = []

    def connect() -> Any:
        conn = psycopg2.connect(dsn)
        connections.append(conn)
        return conn

    return TimescaleSink(connect, write_mode=mode), connections


@pytest.mark.parametrize("mode", ["copy", "insert"])
def test_the_same_batch_twice_adds_no_row(timeseries_db: str, mode: WriteMode) -> None:
    sink, _ = make_sink(timeseries_db, mode)
    device = new_device()
    batch = measurements(device, 50)
    first = sink.write(batch)
    assert (first.inserted, first.duplicates) == (50, 0)
    second = sink.write(batch)
    assert (second.inserted, second.duplicates) == (0, 50)
    stored = rows(timeseries_db, device)
    assert len(stored) == 50
    assert stored[0][:6] == (T0, "sensor", "3", 20.0, None, "celsius")


@pytest.mark.parametrize("mode", ["copy", "insert"])
def test_duplicates_inside_one_batch_and_partial_overlap_are_counted(
    timeseries_db: str, mode: WriteMode
) -> None:
    sink, _ = make_sink(timeseries_db, mode)
    device = new_device()
    batch = measurements(device, 10)
    sink.write(batch[:4])
    result = sink.write(batch + batch[8:])  # 4 already stored, 2 repeated inside the batch
    assert (result.inserted, result.duplicates) == (6, 6)
    assert len(rows(timeseries_db, device)) == 10


@pytest.mark.parametrize("mode", ["copy", "insert"])
def test_text_values_survive_the_write_exactly(timeseries_db: str, mode: WriteMode) -> None:
    sink, _ = make_sink(timeseries_db, mode)
    device = new_device()
    texts = ['"Hello World"', "tab\there", "new\nline\r", "back\\slash \\N", "", "café ✓"]
    batch = [
        Measurement(
            time=T0 + timedelta(seconds=i),
            device_id=device,
            connector_mode="access-control-mode",
            connector="J1",
            component_type="reader",
            component_id="1",
            value_text=text,
            unit=None,
            topic=f"cmnd/{device}/x/J1/reader-1",
        )
        for i, text in enumerate(texts)
    ]
    sink.write(batch)
    stored = rows(timeseries_db, device)
    assert [r[4] for r in stored] == texts
    assert all(r[3] is None and r[5] is None for r in stored)


def test_boolean_map_members_are_distinct_rows_of_one_topic(timeseries_db: str) -> None:
    sink, _ = make_sink(timeseries_db)
    device = new_device()
    topic = f"cmnd/{device}/access-control-mode/J1/door-sensors"
    batch = [
        Measurement(
            time=T0,
            device_id=device,
            connector_mode="access-control-mode",
            connector="J1",
            component_type="door-sensors",
            component_id=member,
            value=value,
            unit="state",
            topic=topic,
        )
        for member, value in (("door-sensor-1", 0.0), ("door-sensor-2", 1.0))
    ]
    assert sink.write(batch).inserted == 2
    assert [(r[2], r[3]) for r in rows(timeseries_db, device)] == [
        ("door-sensor-1", 0.0),
        ("door-sensor-2", 1.0),
    ]


def test_connection_is_reused_across_batches_and_replaced_when_killed(timeseries_db: str) -> None:
    sink, connections = make_sink(timeseries_db)
    device = new_device()
    batch = measurements(device, 6)
    sink.write(batch[:2])
    sink.write(batch[2:4])
    assert len(connections) == 1
    with psycopg2.connect(timeseries_db) as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (connections[0].get_backend_pid(),))
    result = sink.write(batch[4:])
    assert result.inserted == 2
    assert len(connections) == 2
    assert len(rows(timeseries_db, device)) == 6


def test_a_failed_batch_rolls_back_whole_and_the_sink_keeps_working(timeseries_db: str) -> None:
    sink, _ = make_sink(timeseries_db)
    device = new_device()
    good = measurements(device, 3)
    too_long = Measurement.model_construct(**{**good[0].model_dump(), "connector": "J1" * 10})
    with psycopg2.connect(timeseries_db) as conn, conn.cursor() as cur:
        cur.execute(
            "ALTER TABLE iot_measurements ADD CONSTRAINT sink_test_short_connector"
            " CHECK (length(connector) < 10) NOT VALID"
        )
    try:
        with pytest.raises(StoreError, match="writing 2 measurements failed"):
            sink.write([good[1], too_long])
    finally:
        with psycopg2.connect(timeseries_db) as conn, conn.cursor() as cur:
            cur.execute("ALTER TABLE iot_measurements DROP CONSTRAINT sink_test_short_connector")
    assert rows(timeseries_db, device) == []
    assert sink.write(good).inserted == 3


def test_unreachable_database_is_a_store_error() -> None:
    sink = TimescaleSink(
        lambda: psycopg2.connect(
            "host=127.0.0.1 port=1 user=x password=x dbname=x connect_timeout=2"
        )
    )
    with pytest.raises(StoreError, match="unavailable"):
        sink.write(measurements(new_device(), 1))


def test_empty_batch_touches_nothing() -> None:
    sink = TimescaleSink(lambda: pytest.fail("no connection needed"))
    assert (sink.write([]).inserted, sink.write([]).duplicates) == (0, 0)


def test_copy_writes_a_large_batch_in_one_transaction_quickly(timeseries_db: str) -> None:
    sink, connections = make_sink(timeseries_db)
    device = new_device()
    batch = measurements(device, 20_000)
    started = time.perf_counter()
    result = sink.write(batch)
    elapsed = time.perf_counter() - started
    assert result.inserted == 20_000
    again = sink.write(batch)
    assert again.duplicates == 20_000
    assert len(connections) == 1
    print(f"COPY+INSERT of 20000 rows: {elapsed:.2f}s ({20_000 / elapsed:,.0f} rows/s)")
    assert elapsed < 20


def test_overwrite_replaces_changed_rows_inserts_new_ones_and_counts_equal_ones(
    timeseries_db: str,
) -> None:
    device = new_device()
    sink, _ = make_sink(timeseries_db)
    stored = measurements(device, 6)
    sink.write(stored)
    fixed = [m.model_copy(update={"value": m.value * 10}) for m in stored[:3]]
    extra = measurements(device, 8)[6:]
    batch = [*fixed, *stored[3:], *extra, fixed[0]]  # the last one repeats a key of the batch
    result = sink.overwrite(batch)
    assert (result.inserted, result.updated, result.unchanged) == (2, 3, 4)
    got = rows(timeseries_db, device)
    assert len(got) == 8
    assert [r[3] for r in got] == [m.value for m in [*fixed, *stored[3:], *extra]]
    assert sink.overwrite(batch).updated == 0
    assert sink.write(stored).duplicates == 6  # plain writes still never overwrite
    assert [r[3] for r in rows(timeseries_db, device)][:3] == [m.value for m in fixed]


def test_overwrite_of_text_and_unit_changes_counts_as_updated(timeseries_db: str) -> None:
    device = new_device()
    sink, _ = make_sink(timeseries_db, "insert")
    [m] = measurements(device, 1)
    sink.write([m])
    changed = m.model_copy(update={"unit": "kelvin"})
    assert sink.overwrite([changed]).updated == 1
    assert rows(timeseries_db, device)[0][5] == "kelvin"
