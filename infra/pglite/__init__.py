"""PGlite with TimescaleDB served over the PostgreSQL wire protocol, for TimescaleDB DDL checks."""
