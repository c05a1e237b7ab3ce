"""What each simulated device carries: its components, read from the device-management database.

The source of truth is ``device_parameters`` (one row per component of a device's template,
filled once the device is provisioned) plus the template's pins for the member names of
``boolean_map`` components. ``BUILTIN_CATALOGUE`` mirrors ``sql/devices/010_model_templates.sql``
and is only for dry runs and unit tests: a real run always reads the database, so that what
the simulator sends is what the decoder expects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from f2lib.contracts.devices import MODELS
from f2lib.contracts.topics import uplink_topic
from f2lib.errors import SimulatorError

logger = logging.getLogger(__name__)


# The contract's columns of device_parameters; the others are optional (defaults below).
REQUIRED_COLUMNS = (
    "device_id",
    "connector_mode",
    "connector",
    "component_type",
    "component_id",
    "encoding_type",
    "units",
    "scaling_factor",
)
OPTIONAL_COLUMNS = {
    "value_signed": "false",
    "value_width_bits": "NULL::int",
    "data_point_id": "NULL::int",
}
MEMBERS_QUERY = """
SELECT data_point_id, member
FROM pin
WHERE member IS NOT NULL AND data_point_id = ANY(%s)
ORDER BY data_point_id, position
"""
# boolean_map members when the template names none: <singular>-<n>
DEFAULT_MEMBER_COUNT = {"door-sensors": 2, "exit-buttons": 1}


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """One component of a device: where it sits, how its value is encoded."""

    connector_mode: str
    connector: str
    component_type: str
    component_id: str | None
    encoding_type: str
    units: str | None = None
    scaling_factor: float = 1.0
    value_signed: bool = False
    value_width_bits: int | None = None
    members: tuple[str, ...] = ()

    @property
    def component(self) -> str:
        """The topic level: ``strike-1``, ``door-sensors``."""
        if self.component_id is None:
            return self.component_type
        return f"{self.component_type}-{self.component_id}"

    def topic(self, device_id: str) -> str:
        return uplink_topic(device_id, self.connector_mode, self.connector, self.component)

    def member_names(self) -> tuple[str, ...]:
        """The boolean_map members: the template's pins, else ``door-sensor-1`` and so on."""
        if self.members:
            return self.members
        singular = self.component_type.removesuffix("s")
        count = DEFAULT_MEMBER_COUNT.get(self.component_type, 1)
        return tuple(f"{singular}-{n}" for n in range(1, count + 1))


@dataclass(frozen=True, slots=True)
class ModelTemplate:
    """The components of one model's default template."""

    model: str
    components: tuple[ComponentSpec, ...] = field(default_factory=tuple)


def _access(connector: str, n: str) -> list[ComponentSpec]:
    mode = "access-control-mode"
    return [
        ComponentSpec(mode, connector, "strike", n, "boolean", "state"),
        ComponentSpec(
            mode,
            connector,
            "door-sensors",
            None,
            "boolean_map",
            "state",
            members=("door-sensor-1", "door-sensor-2"),
        ),
        ComponentSpec(mode, connector, "reader", n, "raw_string", "text"),
        ComponentSpec(
            mode,
            connector,
            "exit-buttons",
            None,
            "boolean_map",
            "state",
            members=("exit-button-1",),
        ),
    ]


def _alarm(connector: str, kind: str, n: str) -> ComponentSpec:
    units = "presence" if kind == "motion-sensor" else "state"
    return ComponentSpec("alarm-mode", connector, kind, n, "boolean", units)


def _sensor(
    connector: str, n: str, units: str, scale: float, signed: bool, width: int
) -> ComponentSpec:
    return ComponentSpec(
        "sensor-mode", connector, "sensor", n, "hex_to_float", units, scale, signed, width
    )


def _temperature(connector: str, n: str) -> ComponentSpec:
    return _sensor(connector, n, "celsius", 0.1, True, 16)


def _humidity(connector: str, n: str) -> ComponentSpec:
    return _sensor(connector, n, "percent", 0.1, False, 16)


# Dry runs and unit tests only (see the module docstring).
BUILTIN_CATALOGUE: Mapping[str, ModelTemplate] = {
    t.model: t
    for t in (
        ModelTemplate("F2-212", (*_access("J1", "1"), *_access("J2", "2"))),
        ModelTemplate(
            "F2-213",
            (
                *_access("J1", "1"),
                _alarm("J2", "siren", "1"),
                _alarm("J2", "motion-sensor", "1"),
                _alarm("J2", "motion-sensor", "2"),
            ),
        ),
        ModelTemplate(
            "F2-214",
            tuple(
                c
                for j, n in (("J1", "1"), ("J2", "2"), ("J3", "3"), ("J4", "4"))
                for c in _access(j, n)
            ),
        ),
        ModelTemplate(
            "F2-215",
            (
                *_access("J1", "1"),
                *_access("J2", "2"),
                _alarm("J3", "siren", "1"),
                _alarm("J3", "motion-sensor", "1"),
                _temperature("J4", "1"),
                _humidity("J4", "2"),
            ),
        ),
        ModelTemplate(
            "F2-301",
            (
                _alarm("J1", "siren", "1"),
                _alarm("J1", "motion-sensor", "1"),
                _alarm("J2", "siren", "2"),
                _alarm("J2", "motion-sensor", "2"),
                _alarm("J3", "motion-sensor", "3"),
                ComponentSpec(
                    "alarm-mode",
                    "J3",
                    "door-sensors",
                    None,
                    "boolean_map",
                    "state",
                    members=("door-sensor-1", "door-sensor-2"),
                ),
            ),
        ),
        ModelTemplate(
            "F2-401",
            (
                _temperature("J1", "1"),
                _humidity("J1", "2"),
                _temperature("J2", "3"),
                _sensor("J2", "4", "hPa", 0.1, False, 32),
                _sensor("J3", "5", "ppm", 1.0, False, 16),
                _sensor("J4", "6", "lux", 1.0, False, 32),
            ),
        ),
        ModelTemplate(
            "F2-403",
            (
                *_access("J1", "1"),
                _alarm("J2", "siren", "1"),
                _alarm("J2", "motion-sensor", "1"),
                _temperature("J3", "3"),
                _humidity("J3", "4"),
            ),
        ),
    )
}


def builtin_components(model: str) -> tuple[ComponentSpec, ...]:
    """The built-in catalogue's components of ``model`` (dry runs and tests only)."""
    try:
        return BUILTIN_CATALOGUE[model].components
    except KeyError:
        raise SimulatorError(
            f"unknown model {model!r}; expected one of {', '.join(MODELS)}"
        ) from None


Connect = Callable[[], Any]


def load_device_components(
    connect: Connect, device_ids: Iterable[str]
) -> dict[str, tuple[ComponentSpec, ...]]:
    """Every device's components from ``device_parameters`` (and the pins' member names).

    Devices with no row are absent from the answer: the caller decides (they are not
    provisioned, or their template is empty).
    """
    wanted = sorted(set(device_ids))
    try:
        conn = connect()
    except psycopg2.Error as exc:
        raise SimulatorError(f"cannot connect to the device-management database: {exc}") from exc
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(_components_query(cur), (wanted,))
            rows: Sequence[tuple[Any, ...]] = cur.fetchall()
            members = _members(cur, [r[10] for r in rows if r[5] == "boolean_map"])
    except psycopg2.Error as exc:
        raise SimulatorError(f"cannot read device_parameters: {exc}") from exc
    finally:
        conn.close()
    by_device: dict[str, list[ComponentSpec]] = {}
    for row in rows:
        (
            device_id,
            mode,
            connector,
            ctype,
            cid,
            encoding,
            units,
            scale,
            signed,
            width,
            point_id,
        ) = row
        by_device.setdefault(device_id, []).append(
            ComponentSpec(
                connector_mode=mode,
                connector=connector,
                component_type=ctype,
                component_id=cid,
                encoding_type=encoding,
                units=units,
                scaling_factor=1.0 if scale is None else float(scale),
                value_signed=bool(signed),
                value_width_bits=None if width is None else int(width),
                members=tuple(members.get(point_id, ())),
            )
        )
    logger.info(
        "read components of %d of %d devices from device_parameters", len(by_device), len(wanted)
    )
    return {d: tuple(c) for d, c in by_device.items()}


def _components_query(cur: Any) -> sql.Composed:
    """SELECT of the contract's columns, and of the optional ones the view has."""
    cur.execute("SELECT * FROM device_parameters WHERE false")
    present = {column.name for column in cur.description}
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise SimulatorError(f"device_parameters has no column {', '.join(missing)}")
    columns = [sql.Identifier(c) for c in REQUIRED_COLUMNS]
    for name, default in OPTIONAL_COLUMNS.items():
        columns.append(sql.Identifier(name) if name in present else sql.SQL(default))
    return sql.SQL(
        "SELECT {} FROM device_parameters WHERE device_id = ANY(%s) "
        "ORDER BY device_id, connector, component_type, component_id"
    ).format(sql.SQL(", ").join(columns))


def _members(cur: Any, point_ids: list[Any]) -> dict[Any, list[str]]:
    """Member names per data point; empty when the pin table is not there."""
    if not point_ids or any(p is None for p in point_ids):
        return {}
    cur.execute("SELECT to_regclass('pin') IS NOT NULL")
    found = cur.fetchone()
    if not found or not found[0]:
        return {}
    cur.execute(MEMBERS_QUERY, (point_ids,))
    members: dict[Any, list[str]] = {}
    for point_id, member in cur.fetchall():
        members.setdefault(point_id, []).append(member)
    return members
