"""`make status` says which timeseries variant runs, read from the database itself.

Each variant is forced here rather than assumed from the machine: the plain fallback on the
session's PostgreSQL (with the extension dropped first should it be there), TimescaleDB on
PGlite, which ships it.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg2
import pytest

from infra.deploy.schema import apply_timeseries_schema
from infra.local.launch.pglite import PgliteServer
from infra.local.launch.postgres import PostgresServer
from infra.local.stack import TIMESERIES_DB, LocalStack, StackPorts, timeseries_variant

pytestmark = pytest.mark.integration


def variant_of(dsn: str) -> str:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            return timeseries_variant(cur)
    finally:
        conn.close()


@pytest.fixture
def plain_timeseries(postgres: PostgresServer) -> str:
    """The stack's timeseries database on the session server, on the plain fallback."""
    postgres.create_database(TIMESERIES_DB)
    dsn = postgres.dsn(TIMESERIES_DB)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP EXTENSION IF EXISTS timescaledb CASCADE")
    conn.close()
    apply_timeseries_schema(dsn, timescaledb="off")
    return dsn


def test_variant__a_database_without_the_extension_is_the_plain_fallback(
    plain_timeseries: str,
) -> None:
    assert variant_of(plain_timeseries) == "plain PostgreSQL fallback"


def test_variant__a_database_with_the_extension_is_timescaledb_with_its_version(
    pglite: PgliteServer,
) -> None:
    conn = psycopg2.connect(pglite.dsn())  # PGlite: one connection at a time
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            (version,) = cur.fetchone() or ("",)
            assert str(version).startswith("2.")
            assert timeseries_variant(cur) == f"TimescaleDB {version}"
    finally:
        conn.close()


def test_status__the_postgres_line_names_the_variant_that_runs(
    postgres: PostgresServer, plain_timeseries: str
) -> None:
    # A stack whose postgres part is the session server (same data folder and port); every
    # other part on a free port, so that no check reaches a stack running on this machine.
    ports = replace(StackPorts.free(), postgres=postgres.port)
    stack = LocalStack(state_dir=postgres.state_dir.parent, ports=ports)
    report = {part: (ok, detail) for part, ok, detail in stack.status()}
    ok, detail = report["postgres"]
    assert ok, detail
    assert "plain PostgreSQL fallback" in detail
    assert "rows stored" in detail
