"""The downlink contract: which actions each component kind takes, and the command and reply."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from f2lib.contracts.commands import (
    ACTIONS,
    ALL_ACTIONS,
    CommandMessage,
    CommandReply,
    check_action,
)
from f2lib.errors import CommandError, ReplyError


@pytest.mark.parametrize(
    ("kind", "action", "params", "expected"),
    [
        ("strike", "unlock", {"duration_s": 5}, {"duration_s": 5}),
        ("strike", "unlock", {"duration_s": 1}, {"duration_s": 1}),
        ("strike", "unlock", {"duration_s": 60}, {"duration_s": 60}),
        ("strike", "lock", {}, {}),
        ("siren", "on", {"duration_s": 300}, {"duration_s": 300}),
        ("siren", "off", {}, {}),
        (
            "reader",
            "indicator",
            {"color": "amber", "duration_s": 10},
            {"color": "amber", "beep": False, "duration_s": 10},
        ),
        (
            "reader",
            "indicator",
            {"color": "green", "beep": True, "duration_s": 1},
            {"color": "green", "beep": True, "duration_s": 1},
        ),
    ],
)
def test_check_action__accepts_the_contract_and_fills_defaults(
    kind: str, action: str, params: dict[str, object], expected: dict[str, object]
) -> None:
    assert check_action(kind, action, params) == expected


@pytest.mark.parametrize(
    ("kind", "action", "params", "code"),
    [
        ("door-sensors", "unlock", {}, "component_not_commandable"),
        ("motion-sensor", "on", {}, "component_not_commandable"),
        ("sensor", "indicator", {}, "component_not_commandable"),
        ("strike", "open", {}, "unknown_action"),
        ("siren", "unlock", {"duration_s": 5}, "unknown_action"),
        ("strike", "unlock", {}, "missing_param"),
        ("reader", "indicator", {"duration_s": 3}, "missing_param"),
        ("strike", "unlock", {"duration_s": 0}, "invalid_param"),
        ("strike", "unlock", {"duration_s": 61}, "invalid_param"),
        ("strike", "unlock", {"duration_s": 5.0}, "invalid_param"),
        ("strike", "unlock", {"duration_s": True}, "invalid_param"),
        ("strike", "unlock", {"duration_s": "5"}, "invalid_param"),
        ("siren", "on", {"duration_s": 301}, "invalid_param"),
        ("reader", "indicator", {"color": "blue", "duration_s": 3}, "invalid_param"),
        ("reader", "indicator", {"color": "red", "duration_s": 11}, "invalid_param"),
        ("reader", "indicator", {"color": "red", "duration_s": 2, "beep": 1}, "invalid_param"),
        ("strike", "lock", {"duration_s": 5}, "unknown_param"),
        ("strike", "unlock", {"duration_s": 5, "force": True}, "unknown_param"),
    ],
)
def test_check_action__refuses_with_a_422_naming_the_problem(
    kind: str, action: str, params: dict[str, object], code: str
) -> None:
    with pytest.raises(CommandError) as caught:
        check_action(kind, action, params)
    assert (caught.value.status, caught.value.code) == (422, code)


def test_actions__only_strike_siren_and_reader_take_commands() -> None:
    assert set(ACTIONS) == {"strike", "siren", "reader"}
    assert ALL_ACTIONS == ("indicator", "lock", "off", "on", "unlock")


def test_command_message__round_trips_with_a_utc_expiry() -> None:
    command_id = str(uuid.uuid4())
    expires = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(microseconds=5)
    message = CommandMessage(
        command_id=command_id, action="unlock", params={"duration_s": 5}, expires_at=expires
    )
    body = json.loads(message.to_bytes())
    assert body == {
        "command_id": command_id,
        "action": "unlock",
        "params": {"duration_s": 5},
        "expires_at": "2026-12-01T10:00:00.000005+00:00",
    }
    assert CommandMessage.parse(message.to_bytes()) == message


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"command_id": "x", "action": "lock", "expires_at": "2026-01-01T00:00:00Z"}'],
)
def test_command_message__parse_refuses_what_is_not_a_command(payload: bytes) -> None:
    with pytest.raises(ValueError):
        CommandMessage.parse(payload)


def test_reply__parses_the_contract_and_cuts_a_long_detail() -> None:
    command_id = str(uuid.uuid4())
    reply = CommandReply.parse(
        json.dumps({"command_id": command_id, "result": "ok", "detail": "x" * 2000})
    )
    assert reply.result == "ok" and reply.command_id == command_id
    assert reply.detail is not None and len(reply.detail) == 512


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps({"command_id": str(uuid.uuid4()), "result": "maybe"}),
        json.dumps({"command_id": "not-a-uuid", "result": "ok"}),
        json.dumps({"result": "ok"}),
        json.dumps({"command_id": str(uuid.uuid4()), "result": "ok", "detail": "a\x00b"}),
    ],
)
def test_reply__parse_refuses_with_a_bad_reply_record_error(payload: str) -> None:
    with pytest.raises(ReplyError) as caught:
        CommandReply.parse(payload)
    assert caught.value.reason == "bad_reply" and caught.value.stage == "command_reply"
