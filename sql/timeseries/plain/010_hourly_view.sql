-- Plain PostgreSQL fallback (no TimescaleDB): an ordinary table, an hourly view computed on
-- read with the continuous aggregate's columns, and no compression or retention policy.
CREATE OR REPLACE VIEW iot_measurements_hourly AS
SELECT (date_trunc('hour', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS bucket,
       device_id,
       connector_mode,
       connector,
       component_type,
       component_id,
       unit,
       count(*)     AS samples,
       avg(value)   AS value_avg,
       min(value)   AS value_min,
       max(value)   AS value_max
FROM iot_measurements
GROUP BY 1, device_id, connector_mode, connector, component_type, component_id, unit;

COMMENT ON TABLE iot_measurements IS
    'Decoded F2 measurements: plain PostgreSQL fallback, TimescaleDB not available '
    '(no hypertable, compression or retention; iot_measurements_hourly is a plain view)';
