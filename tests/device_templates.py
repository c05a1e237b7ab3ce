"""Device templates of a test's own: a copy of a model's default template whose parameters the
test may change without touching the devices of other tests."""

from __future__ import annotations

import uuid

import psycopg2


def copy_default_template(dsn: str, model: str) -> int:
    """A new, non-default template with the connectors and data points of ``model``'s default."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT template_id FROM device_template WHERE model = %s AND is_default", (model,)
        )
        row = cur.fetchone()
        assert row is not None, f"no default template for {model}"
        source = row[0]
        cur.execute(
            "INSERT INTO device_template (model, name, description, is_default)"
            " VALUES (%s, %s, 'test copy', false) RETURNING template_id",
            (model, f"{model} test {uuid.uuid4().hex[:8]}"),
        )
        copy = cur.fetchone()
        assert copy is not None
        template_id = int(copy[0])
        cur.execute(
            "INSERT INTO connector (template_id, name, connector_mode, interface, description)"
            " SELECT %s, name, connector_mode, interface, description FROM connector"
            " WHERE template_id = %s",
            (template_id, source),
        )
        cur.execute(
            "INSERT INTO data_point (connector_id, component_type, component_id, encoding_type,"
            " units, scaling_factor, value_signed, value_width_bits, description)"
            " SELECT nc.connector_id, dp.component_type, dp.component_id, dp.encoding_type,"
            " dp.units, dp.scaling_factor, dp.value_signed, dp.value_width_bits, dp.description"
            " FROM data_point dp JOIN connector oc ON oc.connector_id = dp.connector_id"
            " JOIN connector nc ON nc.name = oc.name AND nc.template_id = %s"
            " WHERE oc.template_id = %s",
            (template_id, source),
        )
    return template_id


def add_device(dsn: str, device_id: str, model: str, template_id: int) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO device (device_id, model, template_id, serial_number)"
            " VALUES (%s, %s, %s, %s)",
            (device_id, model, template_id, f"T-{device_id}"),
        )


def set_scaling_factor(
    dsn: str,
    template_id: int,
    connector: str,
    component_type: str,
    component_id: str,
    factor: float,
) -> None:
    """Change one data point's scaling factor in the template (every device on it follows)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE data_point dp SET scaling_factor = %s FROM connector c"
            " WHERE dp.connector_id = c.connector_id AND c.template_id = %s AND c.name = %s"
            " AND dp.component_type = %s AND dp.component_id = %s",
            (factor, template_id, connector, component_type, component_id),
        )
        assert cur.rowcount == 1, "no such data point in the template"
