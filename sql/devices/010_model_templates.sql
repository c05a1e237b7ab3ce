-- One default DeviceTemplate per F2 model, with its connectors, data points and pins.
-- The layouts are documented in sql/README.md. Rows are only added when missing (no
-- ON CONFLICT, so identity sequences do not move either): applying twice changes nothing,
-- and an operator's later edits to these rows are kept.

INSERT INTO device_template (model, name, description)
SELECT v.model, v.model || ' standard', v.description
FROM (VALUES
    ('F2-212', 'Two-door access controller'),
    ('F2-213', 'One-door access controller with an alarm zone'),
    ('F2-214', 'Four-door access controller'),
    ('F2-215', 'Two-door access controller with an alarm zone and RS-485 sensors'),
    ('F2-301', 'Alarm controller: sirens, motion sensors and door contacts'),
    ('F2-401', 'RS-485 sensor gateway'),
    ('F2-403', 'Hybrid controller: one door, an alarm zone and RS-485 sensors')
) AS v (model, description)
WHERE NOT EXISTS (SELECT 1 FROM device_template t WHERE t.name = v.model || ' standard');

INSERT INTO connector (template_id, name, connector_mode, interface, description)
SELECT t.template_id, v.name, v.mode, v.interface, v.description
FROM (VALUES
    ('F2-212', 'J1', 'access-control-mode', 'gpio+wiegand', 'Door 1'),
    ('F2-212', 'J2', 'access-control-mode', 'gpio+wiegand', 'Door 2'),
    ('F2-213', 'J1', 'access-control-mode', 'gpio+wiegand', 'Door 1'),
    ('F2-213', 'J2', 'alarm-mode',          'gpio',         'Alarm zone'),
    ('F2-214', 'J1', 'access-control-mode', 'gpio+wiegand', 'Door 1'),
    ('F2-214', 'J2', 'access-control-mode', 'gpio+wiegand', 'Door 2'),
    ('F2-214', 'J3', 'access-control-mode', 'gpio+wiegand', 'Door 3'),
    ('F2-214', 'J4', 'access-control-mode', 'gpio+wiegand', 'Door 4'),
    ('F2-215', 'J1', 'access-control-mode', 'gpio+wiegand', 'Door 1'),
    ('F2-215', 'J2', 'access-control-mode', 'gpio+wiegand', 'Door 2'),
    ('F2-215', 'J3', 'alarm-mode',          'gpio',         'Alarm zone'),
    ('F2-215', 'J4', 'sensor-mode',         'rs485',        'RS-485 sensor bus'),
    ('F2-301', 'J1', 'alarm-mode',          'gpio',         'Alarm zone 1'),
    ('F2-301', 'J2', 'alarm-mode',          'gpio',         'Alarm zone 2'),
    ('F2-301', 'J3', 'alarm-mode',          'gpio',         'Alarm zone 3 with door contacts'),
    ('F2-401', 'J1', 'sensor-mode',         'rs485',        'RS-485 bus 1: climate'),
    ('F2-401', 'J2', 'sensor-mode',         'rs485',        'RS-485 bus 2: climate and pressure'),
    ('F2-401', 'J3', 'sensor-mode',         'rs485',        'RS-485 bus 3: air quality'),
    ('F2-401', 'J4', 'sensor-mode',         'rs485',        'RS-485 bus 4: light'),
    ('F2-403', 'J1', 'access-control-mode', 'gpio+wiegand', 'Door 1'),
    ('F2-403', 'J2', 'alarm-mode',          'gpio',         'Alarm zone'),
    ('F2-403', 'J3', 'sensor-mode',         'rs485',        'RS-485 sensor bus')
) AS v (model, name, mode, interface, description)
JOIN device_template t ON t.name = v.model || ' standard'
WHERE NOT EXISTS (
    SELECT 1 FROM connector c WHERE c.template_id = t.template_id AND c.name = v.name
);

-- Access-control connectors all carry the same four components; the door number is N.
WITH access_doors (model, connector, n) AS (VALUES
    ('F2-212', 'J1', '1'), ('F2-212', 'J2', '2'),
    ('F2-213', 'J1', '1'),
    ('F2-214', 'J1', '1'), ('F2-214', 'J2', '2'), ('F2-214', 'J3', '3'), ('F2-214', 'J4', '4'),
    ('F2-215', 'J1', '1'), ('F2-215', 'J2', '2'),
    ('F2-403', 'J1', '1')
),
points (model, connector, component_type, component_id, encoding_type, units, scaling_factor,
        value_signed, value_width_bits, description) AS (
    SELECT a.model, a.connector, p.component_type, p.component_id, p.encoding_type, p.units,
           1.0::double precision, false, NULL::smallint, p.description
    FROM access_doors a
    CROSS JOIN LATERAL (VALUES
        ('strike',       a.n,         'boolean',     'state', 'Electric strike ' || a.n || ' energised'),
        ('door-sensors', NULL::text,  'boolean_map', 'state', 'Door contacts (door-sensor-<n>: open)'),
        ('reader',       a.n,         'raw_string',  'text',  'QR/NFC reader ' || a.n || ' data'),
        ('exit-buttons', NULL::text,  'boolean_map', 'state', 'Exit buttons (exit-button-<n>: pressed)')
    ) AS p (component_type, component_id, encoding_type, units, description)
    UNION ALL
    SELECT v.model, v.connector, v.component_type, v.component_id, v.encoding_type, v.units,
           v.scaling_factor, v.value_signed, v.value_width_bits::smallint, v.description
    FROM (VALUES
        ('F2-213', 'J2', 'siren',         '1', 'boolean',      'state',    1.0,  false, NULL, 'Siren 1 sounding'),
        ('F2-213', 'J2', 'motion-sensor', '1', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 1'),
        ('F2-213', 'J2', 'motion-sensor', '2', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 2'),
        ('F2-215', 'J3', 'siren',         '1', 'boolean',      'state',    1.0,  false, NULL, 'Siren 1 sounding'),
        ('F2-215', 'J3', 'motion-sensor', '1', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 1'),
        ('F2-215', 'J4', 'sensor',        '1', 'hex_to_float', 'celsius',  0.1,  true,  16,   'Temperature, 0.1 °C, int16'),
        ('F2-215', 'J4', 'sensor',        '2', 'hex_to_float', 'percent',  0.1,  false, 16,   'Relative humidity, 0.1 %, uint16'),
        ('F2-301', 'J1', 'siren',         '1', 'boolean',      'state',    1.0,  false, NULL, 'Siren 1 sounding'),
        ('F2-301', 'J1', 'motion-sensor', '1', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 1'),
        ('F2-301', 'J2', 'siren',         '2', 'boolean',      'state',    1.0,  false, NULL, 'Siren 2 sounding'),
        ('F2-301', 'J2', 'motion-sensor', '2', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 2'),
        ('F2-301', 'J3', 'motion-sensor', '3', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 3'),
        ('F2-301', 'J3', 'door-sensors',  NULL,'boolean_map',  'state',    1.0,  false, NULL, 'Door contacts (door-sensor-<n>: open)'),
        ('F2-401', 'J1', 'sensor',        '1', 'hex_to_float', 'celsius',  0.1,  true,  16,   'Temperature, 0.1 °C, int16'),
        ('F2-401', 'J1', 'sensor',        '2', 'hex_to_float', 'percent',  0.1,  false, 16,   'Relative humidity, 0.1 %, uint16'),
        ('F2-401', 'J2', 'sensor',        '3', 'hex_to_float', 'celsius',  0.1,  true,  16,   'Temperature, 0.1 °C, int16'),
        ('F2-401', 'J2', 'sensor',        '4', 'hex_to_float', 'hPa',      0.1,  false, 32,   'Air pressure, 0.1 hPa, uint32'),
        ('F2-401', 'J3', 'sensor',        '5', 'hex_to_float', 'ppm',      1.0,  false, 16,   'CO2, 1 ppm, uint16'),
        ('F2-401', 'J4', 'sensor',        '6', 'hex_to_float', 'lux',      1.0,  false, 32,   'Illuminance, 1 lx, uint32'),
        ('F2-403', 'J2', 'siren',         '1', 'boolean',      'state',    1.0,  false, NULL, 'Siren 1 sounding'),
        ('F2-403', 'J2', 'motion-sensor', '1', 'boolean',      'presence', 1.0,  false, NULL, 'Motion sensor 1'),
        ('F2-403', 'J3', 'sensor',        '3', 'hex_to_float', 'celsius',  0.1,  true,  16,   'Temperature, 0.1 °C, int16'),
        ('F2-403', 'J3', 'sensor',        '4', 'hex_to_float', 'percent',  0.1,  false, 16,   'Relative humidity, 0.1 %, uint16')
    ) AS v (model, connector, component_type, component_id, encoding_type, units,
            scaling_factor, value_signed, value_width_bits, description)
)
INSERT INTO data_point (connector_id, component_type, component_id, encoding_type, units,
                        scaling_factor, value_signed, value_width_bits, description)
SELECT c.connector_id, p.component_type, p.component_id, p.encoding_type, p.units,
       p.scaling_factor, p.value_signed, p.value_width_bits, p.description
FROM points p
JOIN device_template t ON t.name = p.model || ' standard'
JOIN connector c ON c.template_id = t.template_id AND c.name = p.connector
WHERE NOT EXISTS (
    SELECT 1 FROM data_point dp
    WHERE dp.connector_id = c.connector_id
      AND dp.component_type = p.component_type
      AND dp.component_id IS NOT DISTINCT FROM p.component_id
);

-- Pins: 1 = +12V, 2 = GND on every connector; RS-485 connectors then carry the bus (A, B),
-- the others one or two pins per component, numbered from 3 in a fixed component order.
INSERT INTO pin (connector_id, position, signal, description)
SELECT c.connector_id, v.position, v.signal, v.description
FROM connector c
JOIN device_template t ON t.template_id = c.template_id AND t.name = t.model || ' standard'
CROSS JOIN (VALUES (1, '+12V', 'Supply'), (2, 'GND', 'Ground')) AS v (position, signal, description)
WHERE NOT EXISTS (SELECT 1 FROM pin p WHERE p.connector_id = c.connector_id AND p.position = v.position);

INSERT INTO pin (connector_id, position, signal, description)
SELECT c.connector_id, v.position, v.signal, v.description
FROM connector c
JOIN device_template t ON t.template_id = c.template_id AND t.name = t.model || ' standard'
CROSS JOIN (VALUES (3, 'rs485-a', 'RS-485 A (shared by the bus''s sensors)'),
                   (4, 'rs485-b', 'RS-485 B (shared by the bus''s sensors)')) AS v (position, signal, description)
WHERE c.interface = 'rs485'
  AND NOT EXISTS (SELECT 1 FROM pin p WHERE p.connector_id = c.connector_id AND p.position = v.position);

WITH kinds (component_type, kind_order, pin_order, signal, member) AS (VALUES
    ('strike',        1, 1, 'relay-com',  NULL),
    ('strike',        1, 2, 'relay-no',   NULL),
    ('door-sensors',  2, 1, 'input',      'door-sensor-1'),
    ('door-sensors',  2, 2, 'input',      'door-sensor-2'),
    ('reader',        3, 1, 'wiegand-d0', NULL),
    ('reader',        3, 2, 'wiegand-d1', NULL),
    ('exit-buttons',  4, 1, 'input',      'exit-button-1'),
    ('siren',         5, 1, 'relay-no',   NULL),
    ('motion-sensor', 6, 1, 'input',      NULL)
),
wanted AS (
    SELECT dp.connector_id, dp.data_point_id, k.signal, k.member,
           2 + row_number() OVER (PARTITION BY dp.connector_id
                                  ORDER BY k.kind_order, dp.component_id, k.pin_order) AS position,
           dp.component_type || coalesce('-' || dp.component_id, '')
               || coalesce(' ' || k.member, '') AS description
    FROM data_point dp
    JOIN connector c ON c.connector_id = dp.connector_id
    JOIN device_template t ON t.template_id = c.template_id AND t.name = t.model || ' standard'
    JOIN kinds k ON k.component_type = dp.component_type
    WHERE c.interface <> 'rs485'
)
INSERT INTO pin (connector_id, position, signal, data_point_id, member, description)
SELECT w.connector_id, w.position, w.signal, w.data_point_id, w.member, w.description
FROM wanted w
WHERE NOT EXISTS (SELECT 1 FROM pin p WHERE p.connector_id = w.connector_id AND p.position = w.position);
