-- TimescaleDB: drop raw chunks after 365 days; the hourly aggregate keeps its rows.
SELECT add_retention_policy(
    'iot_measurements',
    drop_after => INTERVAL '365 days',
    if_not_exists => TRUE
);

COMMENT ON TABLE iot_measurements IS
    'Decoded F2 measurements: TimescaleDB hypertable (1-day chunks, compressed after 7 days, '
    'kept 365 days), hourly continuous aggregate iot_measurements_hourly';
