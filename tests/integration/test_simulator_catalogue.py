"""The simulator reads each device's components from the real device-management schema."""

from __future__ import annotations

import psycopg2
import pytest

from infra.tools.simulator.catalogue import BUILTIN_CATALOGUE, load_device_components

pytestmark = pytest.mark.integration

DEMO_DEVICES = {"f2-e4fd45f654be": "F2-403", "f2-0a1b2c3d4e5f": "F2-214"}


def test_components_of_demo_devices_come_from_device_parameters_with_pin_members(
    devices_db: str,
) -> None:
    found = load_device_components(
        lambda: psycopg2.connect(devices_db), [*DEMO_DEVICES, "f2-02f2ffffffff"]
    )

    assert set(found) == set(DEMO_DEVICES)  # an unknown device is absent, never guessed
    for device_id, model in DEMO_DEVICES.items():
        assert sorted(found[device_id], key=repr) == sorted(
            BUILTIN_CATALOGUE[model].components, key=repr
        ), model
    door = next(c for c in found["f2-e4fd45f654be"] if c.component_type == "door-sensors")
    assert door.members == ("door-sensor-1", "door-sensor-2")
    temperature = next(c for c in found["f2-e4fd45f654be"] if c.component == "sensor-3")
    assert (
        temperature.scaling_factor,
        temperature.value_signed,
        temperature.value_width_bits,
        temperature.units,
    ) == (0.1, True, 16, "celsius")


def test_every_model_template_in_the_database_matches_the_builtin_catalogue(
    devices_db: str,
) -> None:
    query = """
        SELECT t.model, c.connector_mode, c.name, dp.component_type, dp.component_id,
               dp.encoding_type, dp.units, dp.scaling_factor, dp.value_signed,
               dp.value_width_bits
        FROM device_template t
        JOIN connector c ON c.template_id = t.template_id
        JOIN data_point dp ON dp.connector_id = c.connector_id
        WHERE t.is_default
    """
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute(query)
        rows = cur.fetchall()
    in_db: dict[str, set[tuple[object, ...]]] = {}
    for model, *rest in rows:
        in_db.setdefault(model, set()).add(tuple(rest))
    builtin = {
        model: {
            (
                c.connector_mode,
                c.connector,
                c.component_type,
                c.component_id,
                c.encoding_type,
                c.units,
                c.scaling_factor,
                c.value_signed,
                c.value_width_bits,
            )
            for c in template.components
        }
        for model, template in BUILTIN_CATALOGUE.items()
    }
    assert in_db == builtin
