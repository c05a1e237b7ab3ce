"""The F2 topic contract as the bridge enforces it."""

from __future__ import annotations

import pytest

from bridge.topics import parse_topic
from f2lib.errors import TopicError

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
def test_parse_topic__accepts_every_mode_and_component_kind(mode: str, component: str) -> None:
    parsed = parse_topic(f"cmnd/{MAC}/{mode}/J3/{component}")
    assert (parsed.device_id, parsed.mode, parsed.connector, parsed.component) == (
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
def test_parse_topic__names_the_wrong_part(topic: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment) as caught:
        parse_topic(topic)
    assert caught.value.reason == "bad_topic"
    assert caught.value.stage == "bridge"
    assert caught.value.context["topic"] == topic
