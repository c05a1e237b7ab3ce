"""The F2 MQTT topic contract: ``cmnd/f2-<mac12hex>/<mode>/<J1..J4>/<component>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from f2lib.errors import TopicError

MODES = frozenset({"access-control-mode", "alarm-mode", "sensor-mode"})
CONNECTORS = frozenset({"J1", "J2", "J3", "J4"})
_DEVICE = re.compile(r"^f2-[0-9a-f]{12}$")
_COMPONENT = re.compile(
    r"^(?:(?:strike|reader|siren|motion-sensor|sensor)-[0-9]{1,4}|door-sensors|exit-buttons)$"
)


@dataclass(frozen=True, slots=True)
class F2Topic:
    """The parts of a valid F2 topic."""

    device_id: str
    mode: str
    connector: str
    component: str


def parse_topic(topic: str, *, stage: str = "bridge") -> F2Topic:
    """Split and validate an F2 topic; raise TopicError naming the first part that is wrong."""
    levels = topic.split("/")
    if len(levels) != 5:
        raise TopicError(f"expected 5 topic levels, got {len(levels)}", stage=stage, topic=topic)
    root, device, mode, connector, component = levels
    if root != "cmnd":
        raise TopicError(f"topic root {root!r} is not 'cmnd'", stage=stage, topic=topic)
    if not _DEVICE.match(device):
        raise TopicError(
            f"device {device!r} is not f2-<12 lowercase hex>", stage=stage, topic=topic
        )
    if mode not in MODES:
        raise TopicError(f"mode {mode!r} is not one of {sorted(MODES)}", stage=stage, topic=topic)
    if connector not in CONNECTORS:
        raise TopicError(f"connector {connector!r} is not J1..J4", stage=stage, topic=topic)
    if not _COMPONENT.match(component):
        raise TopicError(
            f"component {component!r} is not an F2 component", stage=stage, topic=topic
        )
    return F2Topic(device_id=device, mode=mode, connector=connector, component=component)
