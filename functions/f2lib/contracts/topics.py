"""The F2 MQTT topic grammar, written once: uplink, downlink commands and command replies.

Uplink (device -> f2pipe)      ``cmnd/f2-<mac>/<mode>/<connector>/<component>``
Downlink (f2pipe -> device)    ``ctrl/f2-<mac>/<mode>/<connector>/<component>``
Replies (device -> f2pipe)     ``ctrl-resp/f2-<mac>``

``<mode>`` is one of ``CONNECTOR_MODES``, ``<connector>`` one of ``CONNECTORS``, and
``<component>`` a kind of ``COMPONENT_KINDS``: numbered kinds carry ``-<N>`` (1 to 4 digits),
the others none. The bridge, the decoder, the command function, the ACL and the simulator all
build and parse topics here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from f2lib.contracts.devices import DEVICE_ID_PATTERN, is_device_id
from f2lib.errors import TopicError

UPLINK_ROOT = "cmnd"
COMMAND_ROOT = "ctrl"
REPLY_ROOT = "ctrl-resp"
UPLINK_FILTER = f"{UPLINK_ROOT}/#"
COMMAND_FILTER = f"{COMMAND_ROOT}/#"
REPLY_FILTER = f"{REPLY_ROOT}/#"

CONNECTOR_MODES = ("access-control-mode", "alarm-mode", "sensor-mode")
CONNECTORS = ("J1", "J2", "J3", "J4")
# Component kinds a device has; True when the topic level carries a ``-<N>`` suffix.
COMPONENT_KINDS: dict[str, bool] = {
    "strike": True,
    "door-sensors": False,
    "reader": True,
    "exit-buttons": False,
    "siren": True,
    "motion-sensor": True,
    "sensor": True,
}
MAX_COMPONENT_DIGITS = 4

_GRAMMAR = "{root}/f2-<mac12hex>/<mode>/<connector>/<component>"
_NUMBERED = re.compile(r"^(?P<type>.+)-(?P<n>[0-9]+)$")
_DEVICE_IN_TOPIC = re.compile(rf"^(?:{UPLINK_ROOT}|{REPLY_ROOT})/({DEVICE_ID_PATTERN})(?:/|$)")


@dataclass(frozen=True, slots=True)
class TopicParts:
    """The levels of an uplink or downlink topic, with the component split into type and id."""

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


def parse_component(component: str) -> tuple[str, str | None]:
    """A component level's kind and number (``strike-1`` -> ("strike", "1")); TopicError when
    it names no F2 component kind, lacks or has a ``-<N>`` against its kind, or N is too long."""
    component_type, component_id = split_component(component)
    numbered = COMPONENT_KINDS.get(component_type)
    if numbered is None:
        raise TopicError(
            f"component {component!r} is not an F2 component (unknown component kind)",
            topic=component,
        )
    if numbered != (component_id is not None):
        expected = f"{component_type}-<N>" if numbered else component_type
        raise TopicError(f"component {component!r} should be {expected!r}", topic=component)
    if component_id is not None and len(component_id) > MAX_COMPONENT_DIGITS:
        raise TopicError(
            f"component {component!r} is not an F2 component (more than "
            f"{MAX_COMPONENT_DIGITS} digits)",
            topic=component,
        )
    return component_type, component_id


def topic_root(topic: str) -> str:
    """The first level of a topic: ``cmnd``, ``ctrl`` or ``ctrl-resp`` for F2 topics."""
    return topic.split("/", 1)[0]


def _parse(topic: str, root: str, stage: str) -> TopicParts:
    def refuse(why: str) -> TopicError:
        return TopicError(
            f"topic does not match {_GRAMMAR.format(root=root)}: {why}", stage=stage, topic=topic
        )

    levels = topic.split("/")
    if len(levels) != 5:
        raise refuse(f"expected 5 topic levels, got {len(levels)}")
    first, device, mode, connector, component = levels
    if first != root:
        raise refuse(f"topic root {first!r} is not {root!r}")
    if not is_device_id(device):
        raise refuse(f"device {device!r} is not f2-<12 lowercase hex>")
    if mode not in CONNECTOR_MODES:
        raise TopicError(
            f"unknown connector mode {mode!r}, expected one of {', '.join(CONNECTOR_MODES)}",
            stage=stage,
            topic=topic,
        )
    if connector not in CONNECTORS:
        raise TopicError(
            f"unknown connector {connector!r}, expected J1..J4", stage=stage, topic=topic
        )
    try:
        component_type, component_id = parse_component(component)
    except TopicError as exc:
        raise TopicError(str(exc), stage=stage, topic=topic) from None
    return TopicParts(device, mode, connector, component, component_type, component_id)


def parse_topic(topic: str, *, stage: str = "decode") -> TopicParts:
    """Parse an uplink topic; raises TopicError saying which level breaks the grammar."""
    return _parse(topic, UPLINK_ROOT, stage)


def parse_command_topic(topic: str, *, stage: str = "command") -> TopicParts:
    """Parse a downlink command topic ``ctrl/...``; raises TopicError like ``parse_topic``."""
    return _parse(topic, COMMAND_ROOT, stage)


def _topic(root: str, device_id: str, mode: str, connector: str, component: str) -> str:
    topic = f"{root}/{device_id}/{mode}/{connector}/{component}"
    _parse(topic, root, "build")
    return topic


def uplink_topic(device_id: str, mode: str, connector: str, component: str) -> str:
    """``cmnd/<device>/<mode>/<connector>/<component>``; TopicError when a part is invalid."""
    return _topic(UPLINK_ROOT, device_id, mode, connector, component)


def command_topic(device_id: str, mode: str, connector: str, component: str) -> str:
    """``ctrl/<device>/<mode>/<connector>/<component>``; TopicError when a part is invalid."""
    return _topic(COMMAND_ROOT, device_id, mode, connector, component)


def reply_topic(device_id: str) -> str:
    """The topic a device answers commands on: ``ctrl-resp/<device>``."""
    if not is_device_id(device_id):
        raise TopicError(f"device {device_id!r} is not f2-<12 lowercase hex>", topic=device_id)
    return f"{REPLY_ROOT}/{device_id}"


def parse_reply_topic(topic: str, *, stage: str = "command_reply") -> str:
    """The device id of a reply topic ``ctrl-resp/<device>``; TopicError otherwise."""
    root, _, device = topic.partition("/")
    if root != REPLY_ROOT or not is_device_id(device):
        raise TopicError(
            f"topic does not match {REPLY_ROOT}/f2-<mac12hex>", stage=stage, topic=topic
        )
    return device


def device_uplink_filter(device_id: str) -> str:
    """What a device may publish its readings under: ``cmnd/<device>/#``."""
    return f"{UPLINK_ROOT}/{device_id}/#"


def device_command_filter(device_id: str) -> str:
    """What a device may subscribe to for its commands: ``ctrl/<device>/#``."""
    return f"{COMMAND_ROOT}/{device_id}/#"


def device_key(mqtt_topic: str) -> str | None:
    """The Kafka key ``f2-<mac>`` of an uplink or reply topic, or None when it names no device."""
    match = _DEVICE_IN_TOPIC.match(mqtt_topic)
    return match.group(1) if match else None
