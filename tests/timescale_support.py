"""Test databases under TimescaleDB: its background jobs held where they would race the tests."""

from __future__ import annotations

import psycopg2


def hold_retention(dsn: str) -> None:
    """Unschedule TimescaleDB's retention job in a test database (nothing without TimescaleDB).

    The tests write rows at fixed moments (2023, 2025) older than the policy's 365 days; the
    job, whenever it runs, would drop their chunks under the tests. Its presence is checked by
    the schema tests; the tests' data stays put like a fixed clock.
    """
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cur.fetchone() is None:
            conn.close()
            return
        cur.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention'"
        )
    conn.close()
