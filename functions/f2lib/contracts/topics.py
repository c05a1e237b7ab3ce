"""The F2 MQTT topic contract: ``cmnd/f2-<mac>/<mode>/<connector>/<component>`` in parts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from f2lib.errors import TopicError

CONNECTOR_MODES = ("access-control-mode", "alarm-mode", "sensor-mode")
CONNECTORS = ("J1", "J2", "J3", "J4")
# Component kinds a device publishes; True when the topic level carries a ``-<N>`` suffix.
COMPONENT_KINDS: dict[str, bool] = {
    "strike": True,
    "door-sensors": False,
    "reader": True,
    "exit-buttons": False,
    "siren": True,
    "motion-sensor": True,
    "sensor": True,
}

_TOPIC = re.compile(
    r"^cmnd/(?P<device>f2-[0-9a-f]{12})/(?P<mode>[a-z-]+)/(?P<connector>J[0-9]+)/(?P<component>[^/]+)$"
)
_NUMBERED = re.compile(r"^(?P<type>.+)-(?P<n>[0-9]+)$")


@dataclass(frozen=True, slots=True)
class TopicParts:
    """The levels of an F2 topic, with the component split into type and id."""

    device_id: str
    connector_mode: str
    connector: str
    component: str
    component_type: str
    component_id: str | None


def split_component(component: str) -> tuple[str, str | None]:
    """Split a component level at its final ``-<N>``: ``strike-1`` -> ("strike", "1")."""
    match = _NUMBERED.match(component)
    if match is None:
        return component, None
    return match.group("type"), match.group("n")


def parse_topic(topic: str) -> TopicParts:
    """Parse an F2 topic; raises TopicError saying which level breaks the contract."""
    match = _TOPIC.match(topic)
    if match is None:
        raise TopicError(
            "topic does not match cmnd/f2-<mac12hex>/<mode>/<connector>/<component>", topic=topic
        )
    mode, connector, component = match.group("mode", "connector", "component")
    if mode not in CONNECTOR_MODES:
        raise TopicError(f"unknown connector mode {mode!r}", topic=topic)
    if connector not in CONNECTORS:
        raise TopicError(f"unknown connector {connector!r}", topic=topic)
    component_type, component_id = split_component(component)
    numbered = COMPONENT_KINDS.get(component_type)
    if numbered is None:
        raise TopicError(f"unknown component kind {component!r}", topic=topic)
    if numbered != (component_id is not None):
        expected = f"{component_type}-<N>" if numbered else component_type
        raise TopicError(f"component {component!r} should be {expected!r}", topic=topic)
    return TopicParts(
        device_id=match.group("device"),
        connector_mode=mode,
        connector=connector,
        component=component,
        component_type=component_type,
        component_id=component_id,
    )
