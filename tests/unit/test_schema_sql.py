"""Splitting SQL files into statements: quotes, dollar quotes and comments keep their semicolons."""

from __future__ import annotations

from pathlib import Path

from infra.deploy.schema import default_sql_dir, split_sql


def test_split_sql__top_level_semicolons_only() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE a (x text DEFAULT 'a;b');
    /* block; /* nested; */ still comment; */
    DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;
    CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
    SELECT E'it\\'s;', 'it''s;', "odd;name" FROM t;
    SELECT $1;
    -- trailing comment only
    """
    statements = split_sql(text)
    assert len(statements) == 5
    assert statements[0].endswith("DEFAULT 'a;b')")
    assert statements[1].startswith("/* block;")
    assert statements[1].endswith("DO $$ BEGIN PERFORM 1; PERFORM 2; END $$")
    assert "$body$ SELECT 1; $body$" in statements[2]
    assert statements[3].endswith('"odd;name" FROM t')
    assert statements[4] == "SELECT $1"


def test_split_sql__every_project_file_splits_into_statements() -> None:
    files = sorted(Path(default_sql_dir()).rglob("*.sql"))
    assert len(files) >= 8
    for path in files:
        statements = split_sql(path.read_text())
        assert statements, path
        assert all(s and not s.endswith(";") for s in statements), path
