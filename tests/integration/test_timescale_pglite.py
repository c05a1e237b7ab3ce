"""The TimescaleDB DDL for real: PGlite with TimescaleDB 2.23 over the wire (pglite-socket).

One client connection at a time, and COPY FROM STDIN kills that server, so the sink is checked
in its ``insert`` write mode here; the ``copy`` mode is covered on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from f2lib.models import Measurement
from infra.deploy.schema import apply_timeseries_schema
from infra.local.launch.pglite import PgliteServer
from infra.local.ports import free_port
from sink.timeseries import TimescaleSink

pytestmark = pytest.mark.integration

DEVICE = "f2-e4fd45f654be"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            result = list(cur.fetchall())
        conn.commit()
        return result
    finally:
        conn.close()


def timescale_state(dsn: str) -> dict[str, Any]:
    return {
        "hypertables": query(
            dsn,
            "SELECT hypertable_name, num_dimensions, compression_enabled"
            " FROM timescaledb_information.hypertables ORDER BY 1",
        ),
        "dimensions": query(
            dsn,
            "SELECT hypertable_name, column_name, time_interval"
            " FROM timescaledb_information.dimensions WHERE hypertable_name = 'iot_measurements'",
        ),
        "caggs": query(
            dsn,
            "SELECT view_name, materialized_only"
            " FROM timescaledb_information.continuous_aggregates",
        ),
        "jobs": query(
            dsn,
            "SELECT proc_name, hypertable_name, config::text, schedule_interval"
            " FROM timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY 1, 2",
        ),
        "compression": query(
            dsn,
            "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc"
            " FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'iot_measurements' ORDER BY 1",
        ),
        "indexes": query(
            dsn,
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'iot_measurements'"
            " ORDER BY 1",
        ),
        "comment": query(dsn, "SELECT obj_description('iot_measurements'::regclass)"),
    }


@pytest.fixture(scope="module")
def timescale_dsn(pglite: PgliteServer) -> str:
    report = apply_timeseries_schema(pglite.dsn(), timescaledb="require")
    assert report.timescaledb is True
    return pglite.dsn()


def test_schema_uses_timescaledb_2_23_with_hypertable_aggregate_and_policies(
    pglite: PgliteServer,
) -> None:
    report = apply_timeseries_schema(pglite.dsn(), timescaledb="auto")
    assert report.timescaledb is True
    assert report.fallback_reason is None
    assert report.timescaledb_version is not None and report.timescaledb_version.startswith("2.23")
    assert "timeseries/timescaledb/010_hypertable.sql" in report.files
    assert not any("plain" in f for f in report.files)
    state = timescale_state(pglite.dsn())
    assert state["hypertables"] == [("iot_measurements", 1, True)]
    assert state["dimensions"] == [("iot_measurements", "time", timedelta(days=1))]
    assert state["caggs"] == [("iot_measurements_hourly", False)]
    jobs = {(proc, table): config for proc, table, config, _ in state["jobs"]}
    assert '"compress_after": "7 days"' in jobs[("policy_compression", "iot_measurements")]
    assert '"drop_after": "365 days"' in jobs[("policy_retention", "iot_measurements")]
    refresh = [c for (proc, _), c in jobs.items() if proc == "policy_refresh_continuous_aggregate"]
    assert len(refresh) == 1 and '"start_offset": "3 days"' in refresh[0]
    assert ("device_id", 1, None, None) in state["compression"]
    assert ("time", None, 1, False) in state["compression"]
    assert "TimescaleDB hypertable" in state["comment"][0][0]


def test_applying_the_timescaledb_schema_twice_changes_nothing(timescale_dsn: str) -> None:
    before = timescale_state(timescale_dsn)
    apply_timeseries_schema(timescale_dsn, timescaledb="require")
    assert timescale_state(timescale_dsn) == before


def test_sink_insert_mode_on_the_hypertable_is_duplicate_free(timescale_dsn: str) -> None:
    sink = TimescaleSink(lambda: psycopg2.connect(timescale_dsn), write_mode="insert")
    topic = f"cmnd/{DEVICE}/sensor-mode/J3/sensor-3"
    batch = [
        Measurement(
            time=T0 + timedelta(minutes=10 * i),
            device_id=DEVICE,
            connector_mode="sensor-mode",
            connector="J3",
            component_type="sensor",
            component_id="3",
            value=20.0 + i,
            unit="celsius",
            topic=topic,
        )
        for i in range(4)
    ]
    try:
        first = sink.write(batch)
        second = sink.write(batch)
    finally:
        sink.close()
    assert (first.inserted, first.duplicates) == (4, 0)
    assert (second.inserted, second.duplicates) == (0, 4)
    chunks = query(
        timescale_dsn,
        "SELECT count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'iot_measurements'",
    )
    assert chunks[0][0] >= 1
    hourly = query(
        timescale_dsn,
        "SELECT sum(samples), min(value_min), max(value_max) FROM iot_measurements_hourly"
        " WHERE device_id = %s AND component_id = '3'",
        (DEVICE,),
    )
    assert hourly == [(4, 20.0, 23.0)]


def test_sink_overwrite_on_the_hypertable_replaces_values_without_adding_rows(
    timescale_dsn: str,
) -> None:
    sink = TimescaleSink(lambda: psycopg2.connect(timescale_dsn), write_mode="insert")
    device = "f2-0a1b2c3d4e5f"
    batch = [
        Measurement(
            time=T0 + timedelta(minutes=5 * i),
            device_id=device,
            connector_mode="sensor-mode",
            connector="J1",
            component_type="sensor",
            component_id="1",
            value=250.0 + i,
            unit="celsius",
            topic=f"cmnd/{device}/sensor-mode/J1/sensor-1",
        )
        for i in range(4)
    ]
    fixed = [m.model_copy(update={"value": (250.0 + i) / 10}) for i, m in enumerate(batch)]
    try:
        sink.write(batch)
        result = sink.overwrite([*fixed[:3], batch[3]])
    finally:
        sink.close()
    assert (result.inserted, result.updated, result.unchanged) == (0, 3, 1)
    stored = query(
        timescale_dsn,
        "SELECT value FROM iot_measurements WHERE device_id = %s ORDER BY time",
        (device,),
    )
    assert [row[0] for row in stored] == [25.0, 25.1, 25.2, 253.0]


@pytest.fixture
def fresh_pglite(tmp_path: Path) -> Iterator[PgliteServer]:
    server = PgliteServer(tmp_path, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def test_plain_fallback_then_timescaledb_upgrades_in_place(fresh_pglite: PgliteServer) -> None:
    dsn = fresh_pglite.dsn()
    plain = apply_timeseries_schema(dsn, timescaledb="off")
    assert plain.timescaledb is False
    assert plain.fallback_reason == "TimescaleDB disabled by configuration"
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO iot_measurements (time, device_id, connector_mode, connector,"
                " component_type, component_id, value, unit, topic)"
                " VALUES (%s, %s, 'alarm-mode', 'J2', 'siren', '1', 1, 'state', 't')",
                (T0, DEVICE),
            )
        conn.commit()
    finally:
        conn.close()
    upgraded = apply_timeseries_schema(dsn, timescaledb="auto")
    assert upgraded.timescaledb is True
    state = timescale_state(dsn)
    assert state["hypertables"] == [("iot_measurements", 1, True)]
    assert state["caggs"] == [("iot_measurements_hourly", False)]
    assert query(dsn, "SELECT count(*) FROM iot_measurements") == [(1,)]
    assert query(dsn, "SELECT sum(samples) FROM iot_measurements_hourly") == [(1,)]
