-- TimescaleDB: iot_measurements as a hypertable in one-day chunks (existing rows migrated).
SELECT create_hypertable(
    'iot_measurements',
    by_range('time', INTERVAL '1 day'),
    create_default_indexes => FALSE,
    if_not_exists => TRUE,
    migrate_data => TRUE
);
