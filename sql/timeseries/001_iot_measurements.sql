-- Time series of decoded F2 measurements. Plain PostgreSQL DDL; the TimescaleDB files then turn
-- the table into a hypertable, or the plain/ files add the fallback's hourly view.
-- The natural key makes a redelivered batch add no row: the sink inserts ON CONFLICT DO NOTHING.

CREATE TABLE IF NOT EXISTS iot_measurements (
    time            timestamptz NOT NULL,
    device_id       text NOT NULL,
    connector_mode  text NOT NULL,
    connector       text NOT NULL,
    component_type  text NOT NULL,
    component_id    text NOT NULL DEFAULT '',
    value           double precision,
    value_text      text,
    unit            text,
    topic           text NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT iot_measurements_natural_key UNIQUE (device_id, topic, time, component_id)
);
COMMENT ON COLUMN iot_measurements.component_id IS
    'The topic''s -<N>, the boolean_map member name (door-sensor-1), or '''' when neither';
COMMENT ON COLUMN iot_measurements.ingested_at IS 'When the sink committed the row';

CREATE INDEX IF NOT EXISTS iot_measurements_time_idx
    ON iot_measurements (time DESC);
CREATE INDEX IF NOT EXISTS iot_measurements_device_time_idx
    ON iot_measurements (device_id, time DESC);
CREATE INDEX IF NOT EXISTS iot_measurements_component_time_idx
    ON iot_measurements (component_type, component_id, time DESC);
