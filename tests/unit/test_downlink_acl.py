"""Broker rules for downlink commands, as rendered: the device ACL and the internal users."""

from __future__ import annotations

from pathlib import Path

import pytest

from f2lib.errors import RegistryError
from infra.deploy.mosquitto.config import (
    BRIDGE_TOPICS,
    COMMAND_TOPICS,
    MONITOR_TOPICS,
    InternalUser,
    render_internal_acl,
)
from provision.registry import render_acl, validate_acl

ROOT = Path(__file__).resolve().parents[2]
A, B = "f2-0a1b2c3d4e5f", "f2-e4fd45f654be"


def test_acl__each_device_reads_its_commands_and_writes_its_uplink_and_reply_topic() -> None:
    acl = render_acl([A])
    entry = acl.split(f"user {A}\n", 1)[1].splitlines()
    assert entry == [
        f"topic write cmnd/{A}/#",
        f"topic write ctrl-resp/{A}",
        f"topic read ctrl/{A}/#",
    ]
    assert "readwrite" not in acl and "pattern" not in acl


def test_validate_acl__accepts_what_render_acl_writes_and_an_uplink_only_acl() -> None:
    assert validate_acl(render_acl([A, B])) == [A, B]
    assert validate_acl(f"user {A}\ntopic write cmnd/{A}/#\n") == [A]


@pytest.mark.parametrize(
    "text",
    [
        f"user {A}\ntopic read ctrl/{B}/#\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic write ctrl-resp/{B}\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic write ctrl/{A}/#\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic read ctrl/#\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic readwrite ctrl-resp/{A}\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic read ctrl/{A}/#\n",
        f"user {A}\ntopic write cmnd/{A}/#\ntopic write cmnd/{A}/#\n",
        f"user {A}\ntopic write cmnd/{A}/# extra\n",
    ],
)
def test_validate_acl__refuses_foreign_wider_or_repeated_lines(text: str) -> None:
    with pytest.raises(RegistryError):
        validate_acl(text)


def test_internal_users__only_the_command_sender_writes_ctrl() -> None:
    writers = {
        name: [t for access, t in topics if access in ("write", "readwrite")]
        for name, topics in (
            ("bridge", BRIDGE_TOPICS),
            ("command", COMMAND_TOPICS),
            ("monitor", MONITOR_TOPICS),
        )
    }
    assert writers == {"bridge": [], "command": ["ctrl/#"], "monitor": ["cmnd/#"]}
    assert ("read", "ctrl-resp/#") in BRIDGE_TOPICS and ("read", "ctrl-resp/#") in COMMAND_TOPICS


def _entries(text: str) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("user "):
            current = line.split()[1]
            users[current] = []
        elif line.startswith("topic "):
            users[current].append(line)
    return users


def test_deployed_internal_acl__is_what_the_rules_render() -> None:
    deployed = (ROOT / "infra/deploy/k8s/f2pipe/files/internal.acl").read_text()
    rendered = render_internal_acl(
        [
            InternalUser("f2-bridge", "", BRIDGE_TOPICS),
            InternalUser("f2-command", "", COMMAND_TOPICS),
        ]
    )
    assert _entries(deployed) == _entries(rendered)
