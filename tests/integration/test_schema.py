"""The SQL schemas on the real PostgreSQL: idempotent, seeded per model, plain fallback stated."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from f2lib.contracts.topics import parse_topic
from f2lib.errors import ConfigError
from infra.deploy.schema import apply_devices_schema, apply_timeseries_schema
from infra.local.launch.postgres import PostgresServer, timescaledb_installed
from infra.local.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("F2-212", "F2-213", "F2-214", "F2-215", "F2-301", "F2-401", "F2-403")


def fresh_database(postgres: PostgresServer, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    return postgres.dsn(name)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def execute(dsn: str, sql: str, params: Any = None) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)


def snapshot(dsn: str) -> dict[str, Any]:
    """Everything a re-apply could change: catalog objects, definitions, comments, rows."""
    snap: dict[str, Any] = {}
    snap["relations"] = query(
        dsn,
        """SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' ORDER BY 1""",
    )
    snap["columns"] = query(
        dsn,
        """SELECT table_name, column_name, data_type, column_default, is_nullable
           FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""",
    )
    snap["constraints"] = query(
        dsn,
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    )
    snap["indexes"] = query(
        dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    )
    snap["views"] = query(
        dsn, "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1"
    )
    snap["triggers"] = query(
        dsn, "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"
    )
    snap["sequences"] = query(
        dsn,
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    )
    tables = [r[0] for r in snap["relations"] if r[1] == "r"]
    snap["rows"] = {t: query(dsn, f"SELECT * FROM {t} ORDER BY 1") for t in tables}
    return snap


def test_devices_schema__applying_twice_changes_nothing(postgres: PostgresServer) -> None:
    dsn = fresh_database(postgres, "devices_twice")
    first = apply_devices_schema(dsn, demo=True)
    before = snapshot(dsn)
    second = apply_devices_schema(dsn, demo=True)
    assert snapshot(dsn) == before
    assert first.files == second.files
    assert "devices/001_device_management.sql" in first.files
    assert "devices/demo/900_demo_devices.sql" in first.files


def test_timeseries_schema__applying_twice_changes_nothing(postgres: PostgresServer) -> None:
    dsn = fresh_database(postgres, "timeseries_twice")
    apply_timeseries_schema(dsn)
    before = snapshot(dsn)
    apply_timeseries_schema(dsn)
    assert snapshot(dsn) == before


def _assert_plain_fallback(dsn: str, report: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert report.timescaledb is False
    assert "plain PostgreSQL fallback" in report.summary()
    assert any("plain PostgreSQL fallback" in r.getMessage() for r in caplog.records)
    assert "timeseries/plain/010_hourly_view.sql" in report.files
    [(comment,)] = query(dsn, "SELECT obj_description('iot_measurements'::regclass)")
    assert "plain PostgreSQL fallback" in comment
    assert query(dsn, "SELECT relkind FROM pg_class WHERE relname = 'iot_measurements_hourly'") == [
        ("v",)
    ]


@pytest.fixture(scope="module")
def postgres_without_preload(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresServer]:
    """A server that cannot use TimescaleDB: the session one where the extension is absent, else
    one started without ``shared_preload_libraries=timescaledb``."""
    if not timescaledb_installed():
        yield postgres
        return
    server = PostgresServer(
        tmp_path_factory.mktemp("pg-no-preload"), free_port(), timescaledb=False
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_timeseries_schema__with_timescaledb_off_falls_back_and_says_so(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(postgres, "timeseries_off")
    with caplog.at_level("WARNING", logger="infra.deploy.schema"):
        report = apply_timeseries_schema(dsn, timescaledb="off")
    assert report.fallback_reason == "TimescaleDB disabled by configuration"
    _assert_plain_fallback(dsn, report, caplog)


@pytest.mark.skipif(timescaledb_installed(), reason="this server has TimescaleDB installed")
def test_timeseries_schema__without_timescaledb_falls_back_and_says_so(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(postgres, "timeseries_plain")
    with caplog.at_level("WARNING", logger="infra.deploy.schema"):
        report = apply_timeseries_schema(dsn)
    assert report.fallback_reason == "the timescaledb extension is not installed on this server"
    _assert_plain_fallback(dsn, report, caplog)


@pytest.mark.skipif(not timescaledb_installed(), reason="TimescaleDB is not installed here")
def test_timeseries_schema__installed_but_not_preloaded_falls_back_on_a_live_connection(
    postgres_without_preload: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(postgres_without_preload, "timeseries_no_preload")
    with caplog.at_level("WARNING", logger="infra.deploy.schema"):
        report = apply_timeseries_schema(dsn)
    assert report.fallback_reason is not None
    assert "not in shared_preload_libraries" in report.fallback_reason
    _assert_plain_fallback(dsn, report, caplog)


@pytest.mark.skipif(not timescaledb_installed(), reason="TimescaleDB is not installed here")
def test_timeseries_schema__preloaded_timescaledb_makes_a_hypertable(
    postgres: PostgresServer,
) -> None:
    dsn = fresh_database(postgres, "timeseries_tsdb")
    report = apply_timeseries_schema(dsn, timescaledb="require")
    assert report.timescaledb is True and report.timescaledb_version
    assert "TimescaleDB" in report.summary()
    [(hypertable,)] = query(
        dsn,
        "SELECT count(*) FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'iot_measurements'",
    )
    assert hypertable == 1
    [(kind,)] = query(
        dsn,
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'iot_measurements_hourly'",
    )
    assert kind == 1


def test_timeseries_schema__require_timescaledb_refuses_to_fall_back(
    postgres_without_preload: PostgresServer,
) -> None:
    dsn = fresh_database(postgres_without_preload, "timeseries_require")
    with pytest.raises(ConfigError, match="TimescaleDB required"):
        apply_timeseries_schema(dsn, timescaledb="require")
    assert query(dsn, "SELECT to_regclass('iot_measurements')") == [(None,)]


def test_timeseries_schema__natural_key_and_time_indexes(timeseries_db: str) -> None:
    indexes = dict(
        query(
            timeseries_db,
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'iot_measurements'",
        )
    )
    assert '(device_id, topic, "time", component_id)' in indexes["iot_measurements_natural_key"]
    assert "UNIQUE" in indexes["iot_measurements_natural_key"]
    assert '(device_id, "time" DESC)' in indexes["iot_measurements_device_time_idx"]
    assert (
        '(component_type, component_id, "time" DESC)'
        in indexes["iot_measurements_component_time_idx"]
    )


def test_hourly_view__aggregates_per_device_component_and_hour(postgres: PostgresServer) -> None:
    dsn = fresh_database(postgres, "timeseries_hourly")
    apply_timeseries_schema(dsn)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO iot_measurements (time, device_id, connector_mode, connector,
                   component_type, component_id, value, unit, topic)
               VALUES ('2023-05-26 18:10+00', 'f2-e4fd45f654be', 'sensor-mode', 'J3', 'sensor',
                       '3', 20, 'celsius', 't'),
                      ('2023-05-26 18:50+00', 'f2-e4fd45f654be', 'sensor-mode', 'J3', 'sensor',
                       '3', 22, 'celsius', 't'),
                      ('2023-05-26 19:05+00', 'f2-e4fd45f654be', 'sensor-mode', 'J3', 'sensor',
                       '3', 30, 'celsius', 't')"""
        )
    rows = query(
        dsn,
        "SELECT to_char(bucket AT TIME ZONE 'UTC', 'HH24:MI'), samples, value_avg, value_min,"
        " value_max FROM iot_measurements_hourly ORDER BY bucket",
    )
    assert rows == [("18:00", 2, 21.0, 20.0, 22.0), ("19:00", 1, 30.0, 30.0, 30.0)]


# --- device management --------------------------------------------------------------------------


def test_every_model_has_one_default_template_with_connectors_and_data_points(
    devices_db: str,
) -> None:
    rows = query(
        devices_db,
        """SELECT t.model, count(DISTINCT c.connector_id), count(dp.data_point_id),
                  count(DISTINCT p.pin_id)
           FROM device_template t
           JOIN connector c USING (template_id)
           JOIN data_point dp USING (connector_id)
           LEFT JOIN pin p ON p.connector_id = c.connector_id
           WHERE t.is_default GROUP BY t.model ORDER BY t.model""",
    )
    assert [r[0] for r in rows] == list(MODELS)
    assert all(
        connectors >= 2 and points >= 2 and pins >= 4 for _, connectors, points, pins in rows
    )


def test_every_seeded_data_point_names_a_component_the_topic_contract_accepts(
    devices_db: str,
) -> None:
    rows = query(
        devices_db,
        """SELECT c.connector_mode, c.name, dp.component_type, dp.component_id, dp.encoding_type
           FROM data_point dp JOIN connector c USING (connector_id)""",
    )
    assert len(rows) > 50
    for mode, connector, ctype, cid, encoding in rows:
        component = ctype if cid is None else f"{ctype}-{cid}"
        parts = parse_topic(f"cmnd/f2-000000000000/{mode}/{connector}/{component}")
        assert (parts.component_type, parts.component_id) == (ctype, cid)
        expected = {
            "strike": "boolean",
            "siren": "boolean",
            "motion-sensor": "boolean",
            "door-sensors": "boolean_map",
            "exit-buttons": "boolean_map",
            "reader": "raw_string",
            "sensor": "hex_to_float",
        }[ctype]
        assert encoding == expected


def test_demo_device_has_every_component_kind(devices_db: str) -> None:
    rows = query(
        devices_db,
        "SELECT DISTINCT component_type FROM device_parameters WHERE device_id = %s",
        ("f2-e4fd45f654be",),
    )
    assert {r[0] for r in rows} == {
        "strike",
        "door-sensors",
        "reader",
        "exit-buttons",
        "siren",
        "motion-sensor",
        "sensor",
    }


def test_a_device_row_with_only_a_model_gets_its_template_and_parameters_at_once(
    devices_db: str,
) -> None:
    device = f"f2-{uuid.uuid4().hex[:12]}"
    assert (
        query(devices_db, "SELECT 1 FROM device_parameters WHERE device_id = %s", (device,)) == []
    )
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO device (device_id, model, serial_number) VALUES (%s, 'F2-212', 'SN1')",
            (device,),
        )
    rows = query(
        devices_db,
        """SELECT connector, component_type, component_id FROM device_parameters
           WHERE device_id = %s ORDER BY 1, 2, 3""",
        (device,),
    )
    assert ("J1", "strike", "1") in rows and ("J2", "reader", "2") in rows
    assert len(rows) == 8
    [(mac, template_model)] = query(
        devices_db,
        """SELECT d.mac_address, t.model FROM device d JOIN device_template t USING (template_id)
           WHERE d.device_id = %s""",
        (device,),
    )
    assert (mac, template_model) == (device[3:], "F2-212")


def test_device_of_an_unknown_model_or_bad_id_is_refused(devices_db: str) -> None:
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="no default device template"):
        execute(
            devices_db, "INSERT INTO device (device_id, model) VALUES ('f2-00000000abcd', 'F2-999')"
        )
    with pytest.raises(psycopg2.errors.CheckViolation):
        execute(
            devices_db, "INSERT INTO device (device_id, model) VALUES ('F2-00000000ABCD', 'F2-212')"
        )


def test_device_template_must_match_the_device_model(devices_db: str) -> None:
    [(template_401,)] = query(
        devices_db, "SELECT template_id FROM device_template WHERE model = 'F2-401' AND is_default"
    )
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        execute(
            devices_db,
            "INSERT INTO device (device_id, model, template_id)"
            " VALUES ('f2-00000000abce', 'F2-212', %s)",
            (template_401,),
        )


def test_schema_cli_applies_both_databases(postgres: PostgresServer) -> None:
    devices = fresh_database(postgres, "cli_devices")
    timeseries = fresh_database(postgres, "cli_timeseries")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'functions'}:{ROOT}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.schema",
            "--devices-dsn",
            devices,
            "--timeseries-dsn",
            timeseries,
            "--demo",
            "--timescaledb",
            "off",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "devices: " in result.stdout
    assert "timeseries: " in result.stdout and "plain PostgreSQL fallback" in result.stdout
    assert postgres.password not in result.stdout + result.stderr
    assert query(devices, "SELECT count(*) FROM device")[0][0] == 2
    assert query(timeseries, "SELECT to_regclass('iot_measurements')::text") == [
        ("iot_measurements",)
    ]


def test_schema_cli_reads_the_dsns_from_secret_files(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    devices = fresh_database(postgres, "cli_file_devices")
    timeseries = fresh_database(postgres, "cli_file_timeseries")
    (tmp_path / "devices-dsn").write_text(devices + "\n")
    (tmp_path / "timeseries-dsn").write_text(timeseries + "\n")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'functions'}:{ROOT}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.schema",
            "--devices-dsn-file",
            str(tmp_path / "devices-dsn"),
            "--timeseries-dsn-file",
            str(tmp_path / "timeseries-dsn"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "devices: " in result.stdout and "timeseries: " in result.stdout
    assert postgres.password not in result.stdout + result.stderr
    assert query(timeseries, "SELECT to_regclass('iot_measurements')::text") == [
        ("iot_measurements",)
    ]


def test_schema_cli_reports_an_unreachable_database_without_a_traceback() -> None:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'functions'}:{ROOT}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.schema",
            "--devices-dsn",
            "host=127.0.0.1 port=1 user=x password=hunter2 dbname=x connect_timeout=2",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
