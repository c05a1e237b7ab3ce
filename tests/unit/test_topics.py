"""The F2 topic contract: every component kind parses; each broken level is a TopicError."""

from __future__ import annotations

import pytest

from f2lib.contracts.topics import parse_topic, split_component
from f2lib.errors import TopicError

DEVICE = "f2-e4fd45f654be"


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("strike-1", ("strike", "1")),
        ("door-sensors", ("door-sensors", None)),
        ("reader-2", ("reader", "2")),
        ("exit-buttons", ("exit-buttons", None)),
        ("siren-12", ("siren", "12")),
        ("motion-sensor-1", ("motion-sensor", "1")),
        ("sensor-3", ("sensor", "3")),
    ],
)
def test_split_component__splits_at_the_final_dash_number(
    component: str, expected: tuple[str, str | None]
) -> None:
    assert split_component(component) == expected


@pytest.mark.parametrize(
    ("mode", "connector", "component", "ctype", "cid"),
    [
        ("access-control-mode", "J1", "strike-1", "strike", "1"),
        ("access-control-mode", "J1", "door-sensors", "door-sensors", None),
        ("access-control-mode", "J2", "reader-1", "reader", "1"),
        ("access-control-mode", "J3", "exit-buttons", "exit-buttons", None),
        ("alarm-mode", "J2", "siren-1", "siren", "1"),
        ("alarm-mode", "J4", "motion-sensor-2", "motion-sensor", "2"),
        ("sensor-mode", "J3", "sensor-3", "sensor", "3"),
    ],
)
def test_parse_topic__every_component_kind(
    mode: str, connector: str, component: str, ctype: str, cid: str | None
) -> None:
    parts = parse_topic(f"cmnd/{DEVICE}/{mode}/{connector}/{component}")
    assert parts.device_id == DEVICE
    assert parts.connector_mode == mode
    assert parts.connector == connector
    assert parts.component == component
    assert (parts.component_type, parts.component_id) == (ctype, cid)


@pytest.mark.parametrize(
    ("topic", "says"),
    [
        ("stat/f2-e4fd45f654be/alarm-mode/J1/siren-1", "does not match"),
        ("cmnd/f2-E4FD45F654BE/alarm-mode/J1/siren-1", "does not match"),
        ("cmnd/f2-e4fd45f654/alarm-mode/J1/siren-1", "does not match"),
        ("cmnd/e4fd45f654be/alarm-mode/J1/siren-1", "does not match"),
        ("cmnd/f2-e4fd45f654be/alarm-mode/J1", "does not match"),
        ("cmnd/f2-e4fd45f654be/alarm-mode/J1/siren-1/extra", "does not match"),
        ("cmnd/f2-e4fd45f654be/party-mode/J1/siren-1", "unknown connector mode"),
        ("cmnd/f2-e4fd45f654be/alarm-mode/J5/siren-1", "unknown connector"),
        ("cmnd/f2-e4fd45f654be/alarm-mode/J1/laser-1", "unknown component kind"),
        ("cmnd/f2-e4fd45f654be/alarm-mode/J1/siren", "should be 'siren-<N>'"),
        ("cmnd/f2-e4fd45f654be/access-control-mode/J1/door-sensors-1", "should be 'door-sensors'"),
        ("", "does not match"),
    ],
)
def test_parse_topic__rejects_topic_breaking_the_contract(topic: str, says: str) -> None:
    with pytest.raises(TopicError, match=says) as caught:
        parse_topic(topic)
    assert caught.value.reason == "bad_topic"
    assert caught.value.context["topic"] == topic
