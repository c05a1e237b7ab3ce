-- TimescaleDB: compress chunks older than 7 days, segmented by device. Late data is expected
-- within 3 days (the aggregate's refresh window), so inserts, and the sink's ON CONFLICT
-- checks, stay on uncompressed chunks (upserts into compressed chunks are slow).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema()
                     AND hypertable_name = 'iot_measurements'
                     AND compression_enabled) THEN
        ALTER TABLE iot_measurements SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time DESC'
        );
    END IF;
END
$$;

SELECT add_compression_policy(
    'iot_measurements',
    compress_after => INTERVAL '7 days',
    if_not_exists => TRUE
);
