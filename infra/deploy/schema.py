"""Apply the SQL schemas in sql/ idempotently; TimescaleDB when the server has it, else plain.

``python -m infra.deploy.schema --devices-dsn DSN --timeseries-dsn DSN [--demo]`` applies both
(``--devices-dsn-file`` / ``--timeseries-dsn-file`` read each DSN from a secret file instead,
keeping its password off the command line).
The devices database gets ``sql/devices/*.sql`` (and ``sql/devices/demo/*.sql`` with
``--demo``); the timeseries database gets ``sql/timeseries/*.sql`` and then either
``sql/timeseries/timescaledb/*.sql`` or, when TimescaleDB cannot be used, the plain
PostgreSQL fallback ``sql/timeseries/plain/*.sql`` -- and says so. Every file is written to
be applied again without changing anything.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg2

from f2lib.errors import ConfigError, StoreError
from f2lib.secrets import read_secret_file

logger = logging.getLogger(__name__)

TimescaleMode = Literal["auto", "require", "off"]
_LOCK_KEY = 0x66327069  # one schema change at a time per database ("f2pi")


def default_sql_dir() -> Path:
    """``sql/`` of the repository (override with F2_SQL_DIR or ``--sql-dir``)."""
    override = os.environ.get("F2_SQL_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "sql"


@dataclass
class SchemaReport:
    """What one apply did to one database."""

    database: str
    files: list[str] = field(default_factory=list)
    statements: int = 0
    timescaledb: bool = False
    timescaledb_version: str | None = None
    fallback_reason: str | None = None

    def summary(self) -> str:
        if self.database == "devices":
            variant = "device management"
        elif self.timescaledb:
            variant = f"TimescaleDB {self.timescaledb_version}"
        else:
            variant = f"plain PostgreSQL fallback ({self.fallback_reason})"
        return f"{self.database}: {len(self.files)} files, {self.statements} statements, {variant}"


def split_sql(text: str) -> list[str]:
    """Split SQL text into statements at top-level semicolons.

    Knows quoted strings ('' and E'\\' escapes), quoted identifiers, dollar quotes
    ($$ and $tag$), line comments and nested block comments. Drops empty statements.
    """
    statements: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif char == "/" and text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not text[i - 2].isalnum())
            i += 1
            while i < n:
                if escapes and text[i] == "\\":
                    i += 2
                elif text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif char == '"':
            end = text.find('"', i + 1)
            i = n if end < 0 else end + 1
        elif char == "$" and (tag := _dollar_tag(text, i)) is not None:
            end = text.find(tag, i + len(tag))
            i = n if end < 0 else end + len(tag)
        elif char == ";":
            statements.append(text[start:i])
            i += 1
            start = i
        else:
            i += 1
    statements.append(text[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _dollar_tag(text: str, i: int) -> str | None:
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return None
    end = text.find("$", i + 1)
    if end < 0:
        return None
    tag = text[i + 1 : end]
    if tag and not (tag[0].isalpha() or tag[0] == "_"):
        return None
    if not all(c.isalnum() or c == "_" for c in tag):
        return None
    return text[i : end + 1]


def _has_code(statement: str) -> bool:
    for line in statement.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return True
    return False


def sql_files(directory: Path) -> list[Path]:
    """The ``*.sql`` files of a directory, in name order (not recursive)."""
    if not directory.is_dir():
        raise ConfigError(f"SQL directory {directory} does not exist")
    return sorted(p for p in directory.iterdir() if p.suffix == ".sql" and p.is_file())


def _connect(dsn: str) -> Any:
    try:
        conn = psycopg2.connect(dsn, connect_timeout=15)
    except psycopg2.Error as exc:
        raise StoreError(f"cannot connect to apply the schema: {exc}") from exc
    conn.autocommit = True
    return conn


def _apply_files(conn: Any, files: Sequence[Path], report: SchemaReport, root: Path) -> None:
    with conn.cursor() as cur:
        for path in files:
            name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            for index, statement in enumerate(split_sql(path.read_text(encoding="utf-8")), 1):
                try:
                    cur.execute(statement)
                except psycopg2.Error as exc:
                    raise StoreError(
                        f"{name} statement {index} failed: {str(exc).strip()}"
                    ) from exc
                report.statements += 1
            report.files.append(name)
            logger.debug("applied %s", name)


class _Locked:
    """Holds the schema advisory lock of one connection while applying."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))

    def __exit__(self, *exc: object) -> None:
        # A connection that died holds no lock any more: nothing to release.
        if not self._conn.closed:
            with contextlib.suppress(psycopg2.Error), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def apply_devices_schema(
    dsn: str, *, sql_dir: Path | None = None, demo: bool = False
) -> SchemaReport:
    """Create or update the device management schema (and the demo devices with ``demo``)."""
    root = sql_dir or default_sql_dir()
    files = sql_files(root / "devices")
    if demo:
        files += sql_files(root / "devices" / "demo")
    report = SchemaReport(database="devices")
    conn = _connect(dsn)
    try:
        with _Locked(conn):
            _apply_files(conn, files, report, root)
    finally:
        conn.close()
    logger.info("%s", report.summary())
    return report


def _enable_timescaledb(conn: Any, mode: TimescaleMode) -> tuple[str | None, str | None]:
    """(version, None) when TimescaleDB is usable, else (None, why not).

    Any failure of the extension step is a reason to fall back, never an error: without
    ``shared_preload_libraries=timescaledb``, ``CREATE EXTENSION`` can even end the server
    process of the connection (the caller then applies the fallback on a new one).
    """
    if mode == "off":
        return None, "TimescaleDB disabled by configuration"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            row = cur.fetchone()
            if row is not None:
                return str(row[0]), None
            cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            if cur.fetchone() is None:
                return None, "the timescaledb extension is not installed on this server"
            cur.execute("SHOW shared_preload_libraries")
            preloaded = "timescaledb" in str((cur.fetchone() or ("",))[0])
    except psycopg2.Error as exc:
        return None, f"cannot check for TimescaleDB: {str(exc).strip()}"
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            row = cur.fetchone()
    except psycopg2.Error as exc:
        hint = "" if preloaded else " (timescaledb is not in shared_preload_libraries)"
        return None, f"CREATE EXTENSION timescaledb failed{hint}: {str(exc).strip()}"
    return (str(row[0]), None) if row else (None, "timescaledb did not install")


def _alive(conn: Any) -> bool:
    if conn.closed:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except psycopg2.Error:
        return False
    return True


def apply_timeseries_schema(
    dsn: str, *, sql_dir: Path | None = None, timescaledb: TimescaleMode = "auto"
) -> SchemaReport:
    """Create or update ``iot_measurements``: TimescaleDB when usable, else the plain fallback.

    ``timescaledb="require"`` raises ConfigError instead of falling back.
    """
    root = sql_dir or default_sql_dir()
    report = SchemaReport(database="timeseries")
    conn = _connect(dsn)
    try:
        with _Locked(conn):
            version, reason = _enable_timescaledb(conn, timescaledb)
        if not _alive(conn):
            logger.warning("the extension step ended the connection; reconnecting")
            with contextlib.suppress(psycopg2.Error):
                conn.close()
            conn = _connect(dsn)
        with _Locked(conn):
            if version is None and timescaledb == "require":
                raise ConfigError(f"TimescaleDB required but unusable: {reason}")
            report.timescaledb = version is not None
            report.timescaledb_version = version
            report.fallback_reason = reason
            if reason is not None:
                logger.warning(
                    "TimescaleDB not used (%s): applying the plain PostgreSQL fallback", reason
                )
            variant = "timescaledb" if version is not None else "plain"
            files = sql_files(root / "timeseries") + sql_files(root / "timeseries" / variant)
            _apply_files(conn, files, report, root)
    finally:
        with contextlib.suppress(psycopg2.Error):
            conn.close()
    logger.info("%s", report.summary())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.schema",
        description="Apply the f2pipe SQL schemas idempotently.",
    )
    parser.add_argument("--devices-dsn", help="libpq DSN of the device management database")
    parser.add_argument("--timeseries-dsn", help="libpq DSN of the timeseries database")
    parser.add_argument("--devices-dsn-file", type=Path, help="file holding --devices-dsn")
    parser.add_argument("--timeseries-dsn-file", type=Path, help="file holding --timeseries-dsn")
    parser.add_argument("--demo", action="store_true", help="also add the demo devices")
    parser.add_argument(
        "--timescaledb",
        choices=("auto", "require", "off"),
        default="auto",
        help="auto: use TimescaleDB when the server has it, else fall back (default)",
    )
    parser.add_argument("--sql-dir", type=Path, help="the sql/ directory (default: the repo's)")
    args = parser.parse_args(argv)
    given = (args.devices_dsn, args.devices_dsn_file, args.timeseries_dsn, args.timeseries_dsn_file)
    if not any(given):
        parser.error("give --devices-dsn[-file] and/or --timeseries-dsn[-file]")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        if args.devices_dsn_file:
            args.devices_dsn = read_secret_file(args.devices_dsn_file).get_secret_value()
        if args.timeseries_dsn_file:
            args.timeseries_dsn = read_secret_file(args.timeseries_dsn_file).get_secret_value()
        reports = []
        if args.devices_dsn:
            reports.append(
                apply_devices_schema(args.devices_dsn, sql_dir=args.sql_dir, demo=args.demo)
            )
        if args.timeseries_dsn:
            reports.append(
                apply_timeseries_schema(
                    args.timeseries_dsn, sql_dir=args.sql_dir, timescaledb=args.timescaledb
                )
            )
    except (StoreError, ConfigError) as exc:
        print(f"schema: {exc}", file=sys.stderr)
        return 1
    for report in reports:
        print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
