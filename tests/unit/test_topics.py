"""The F2 topic grammar: every component kind parses; each broken level is a TopicError naming it."""

from __future__ import annotations

import pytest

from f2lib.contracts.topics import (
    command_topic,
    parse_command_topic,
    parse_component,
    parse_reply_topic,
    parse_topic,
    reply_topic,
    split_component,
    topic_root,
)
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


MAC = "f2-a1b2c3d4e5f6"


@pytest.mark.parametrize(
    "component",
    [
        "strike-1",
        "door-sensors",
        "reader-2",
        "exit-buttons",
        "siren-1",
        "motion-sensor-3",
        "sensor-12",
    ],
)
@pytest.mark.parametrize("mode", ["access-control-mode", "alarm-mode", "sensor-mode"])
def test_parse_topic__accepts_every_mode_and_component_kind_for_the_bridge(
    mode: str, component: str
) -> None:
    parsed = parse_topic(f"cmnd/{MAC}/{mode}/J3/{component}", stage="bridge")
    assert (parsed.device_id, parsed.connector_mode, parsed.connector, parsed.component) == (
        MAC,
        mode,
        "J3",
        component,
    )


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        (f"cmnd/{MAC}/access-control-mode/J1", "expected 5 topic levels, got 4"),
        (f"cmnd/{MAC}/access-control-mode/J1/strike-1/extra", "got 6"),
        (f"stat/{MAC}/access-control-mode/J1/strike-1", "root 'stat'"),
        ("cmnd/f2-A1B2C3D4E5F6/access-control-mode/J1/strike-1", "lowercase hex"),
        ("cmnd/f2-a1b2c3d4e5/access-control-mode/J1/strike-1", "lowercase hex"),
        ("cmnd/a1b2c3d4e5f6/access-control-mode/J1/strike-1", "lowercase hex"),
        (f"cmnd/{MAC}/party-mode/J1/strike-1", "mode 'party-mode'"),
        (f"cmnd/{MAC}/alarm-mode/J5/siren-1", "connector 'J5'"),
        (f"cmnd/{MAC}/alarm-mode/J0/siren-1", "connector 'J0'"),
        (f"cmnd/{MAC}/alarm-mode/J1/siren", "component 'siren'"),
        (f"cmnd/{MAC}/alarm-mode/J1/toaster-1", "component 'toaster-1'"),
        (f"cmnd/{MAC}/alarm-mode/J1/", "component ''"),
    ],
)
def test_parse_topic__names_the_wrong_part_with_the_callers_stage(
    topic: str, fragment: str
) -> None:
    with pytest.raises(TopicError, match=fragment) as caught:
        parse_topic(topic, stage="bridge")
    assert caught.value.reason == "bad_topic"
    assert caught.value.stage == "bridge"
    assert caught.value.context["topic"] == topic


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("strike-1", ("strike", "1")),
        ("door-sensors", ("door-sensors", None)),
        ("sensor-9999", ("sensor", "9999")),
    ],
)
def test_parse_component__gives_kind_and_number(
    component: str, expected: tuple[str, str | None]
) -> None:
    assert parse_component(component) == expected


@pytest.mark.parametrize("component", ["strike", "door-sensors-1", "toaster-1", "sensor-12345", ""])
def test_parse_component__refuses_what_the_grammar_does(component: str) -> None:
    with pytest.raises(TopicError):
        parse_component(component)


def test_downlink_topics__build_and_parse_with_the_same_grammar() -> None:
    topic = command_topic(MAC, "alarm-mode", "J2", "siren-1")
    assert topic == f"ctrl/{MAC}/alarm-mode/J2/siren-1"
    parts = parse_command_topic(topic)
    assert (parts.device_id, parts.component_type, parts.component_id) == (MAC, "siren", "1")
    assert parse_reply_topic(reply_topic(MAC)) == MAC
    assert [topic_root(t) for t in (topic, reply_topic(MAC), "cmnd/x")] == [
        "ctrl",
        "ctrl-resp",
        "cmnd",
    ]
    with pytest.raises(TopicError):
        command_topic(MAC, "alarm-mode", "J2", "siren")
    with pytest.raises(TopicError):
        parse_reply_topic(f"ctrl-resp/{MAC}/extra")
