#!/bin/sh
# Runs once, when the TimescaleDB image initialises an empty data directory (after the image's
# own scripts have put the timescaledb extension into template1): creates the application role
# f2pipe (password read from the file named by F2PIPE_DB_PASSWORD_FILE, never put on a command
# line) and the two databases the pipeline uses, devices and timeseries, owned by it. The schema
# itself is applied afterwards by `python -m infra.deploy.schema` (install.sh, or the chart's Job).
set -eu
: "${F2PIPE_DB_PASSWORD_FILE:?F2PIPE_DB_PASSWORD_FILE is not set}"
test -r "$F2PIPE_DB_PASSWORD_FILE"
export F2PIPE_DB_PASSWORD_FILE
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
\set pw `tr -d '\r\n' < "$F2PIPE_DB_PASSWORD_FILE"`
SELECT format('CREATE ROLE f2pipe LOGIN PASSWORD %L', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'f2pipe') \gexec
SELECT 'CREATE DATABASE devices OWNER f2pipe'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'devices') \gexec
SELECT 'CREATE DATABASE timeseries OWNER f2pipe'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'timeseries') \gexec
SQL
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname timeseries <<'SQL'
SELECT 'CREATE EXTENSION IF NOT EXISTS timescaledb'
 WHERE EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') \gexec
SQL
