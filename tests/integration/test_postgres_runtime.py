"""The runtime's PostgreSQL cluster: run as the postgres user, password auth, databases."""

from __future__ import annotations

import psycopg2
import pytest

from infra.local.launch.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_postgres_accepts_password_and_rejects_wrong_one(postgres: PostgresServer) -> None:
    with psycopg2.connect(postgres.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_addr()::text")
        assert cur.fetchone() == ("postgres", "127.0.0.1/32")
    bad = postgres.dsn().replace(postgres.password, "wrong-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(bad)


def test_create_database_is_idempotent(postgres: PostgresServer) -> None:
    postgres.create_database("twice")
    postgres.create_database("twice")
    with psycopg2.connect(postgres.dsn("twice")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == ("twice",)
