-- TimescaleDB: hourly continuous aggregate per device and component, refreshed every 30
-- minutes over the last 3 days (late data up to then is folded in), real-time on top.

-- The plain fallback's view of the same name goes when TimescaleDB arrives later.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_views
               WHERE schemaname = current_schema() AND viewname = 'iot_measurements_hourly')
       AND NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_schema = current_schema()
                         AND view_name = 'iot_measurements_hourly') THEN
        DROP VIEW iot_measurements_hourly;
    END IF;
END
$$;

CREATE MATERIALIZED VIEW IF NOT EXISTS iot_measurements_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
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
GROUP BY bucket, device_id, connector_mode, connector, component_type, component_id, unit
WITH NO DATA;

SELECT add_continuous_aggregate_policy(
    'iot_measurements_hourly',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes',
    if_not_exists => TRUE
);
