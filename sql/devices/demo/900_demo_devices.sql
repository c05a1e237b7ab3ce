-- Optional demo devices for tests and local demos (applied with `--demo`, never in production).
-- f2-e4fd45f654be is the device of the original examples; as an F2-403 it has every component
-- kind: strike, door-sensors, reader, exit-buttons (J1), siren, motion-sensor (J2), sensor (J3).

INSERT INTO device (device_id, model, serial_number, name, status)
SELECT v.device_id, v.model, v.serial_number, v.name, 'active'
FROM (VALUES
    ('f2-e4fd45f654be', 'F2-403', 'DEMO-403-0001', 'Demo hybrid controller'),
    ('f2-0a1b2c3d4e5f', 'F2-214', 'DEMO-214-0001', 'Demo four-door controller')
) AS v (device_id, model, serial_number, name)
WHERE NOT EXISTS (SELECT 1 FROM device d WHERE d.device_id = v.device_id);
