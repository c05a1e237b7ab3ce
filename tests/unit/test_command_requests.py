"""The command function's request checks and callers' tokens, without database or broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from command.requests import parse_command, read_body, seen_fields
from command.tokens import CallerTokens
from f2lib.errors import CommandError, ConfigError

GOOD: dict[str, Any] = {
    "device_id": "f2-e4fd45f654be",
    "connector": "J1",
    "component": "strike-1",
    "action": "unlock",
    "params": {"duration_s": 5},
}


def test_parse_command__gives_the_component_split_and_a_default_wait() -> None:
    command = parse_command(dict(GOOD, device_id=" F2-E4FD45F654BE "))
    assert command.device_id == "f2-e4fd45f654be"
    assert (command.component_type, command.component_id) == ("strike", "1")
    assert command.params == {"duration_s": 5} and command.wait_s == 5.0


def test_parse_command__takes_a_wait_of_zero_and_thirty() -> None:
    assert parse_command(dict(GOOD, wait_s=0)).wait_s == 0.0
    assert parse_command(dict(GOOD, wait_s=30)).wait_s == 30.0
    assert parse_command(dict(GOOD, wait_s=2.5), max_wait_s=3).wait_s == 2.5


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"colour": "red"}, "unknown_field"),
        ({"device_id": None}, "invalid_field"),
        ({"device_id": ""}, "invalid_field"),
        ({"action": 5}, "invalid_field"),
        ({"params": [1]}, "invalid_field"),
        ({"device_id": "e4fd45f654be"}, "invalid_device_id"),
        ({"device_id": "f2-e4fd45f654bz"}, "invalid_device_id"),
        ({"connector": "J5"}, "invalid_connector"),
        ({"component": "strike"}, "invalid_component"),
        ({"component": "toaster-1"}, "invalid_component"),
        ({"component": "strike-12345"}, "invalid_component"),
        ({"wait_s": 31}, "invalid_wait"),
        ({"wait_s": -1}, "invalid_wait"),
        ({"wait_s": "5"}, "invalid_field"),
        ({"wait_s": True}, "invalid_field"),
        ({"action": "open"}, "unknown_action"),
        ({"params": {}}, "missing_param"),
        ({"params": {"duration_s": 61}}, "invalid_param"),
    ],
)
def test_parse_command__refuses_naming_the_problem(change: dict[str, Any], code: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command({**GOOD, **change})
    assert caught.value.code == code
    assert caught.value.status == (422 if code.endswith("_param") or "action" in code else 400)


@pytest.mark.parametrize("missing", ["device_id", "connector", "component", "action"])
def test_parse_command__refuses_a_missing_field(missing: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(CommandError) as caught:
        parse_command(data)
    assert caught.value.code == "missing_field" and missing in str(caught.value)


@pytest.mark.parametrize(("body", "code"), [(b"{nope", "invalid_json"), (b"[1]", "invalid_body")])
def test_read_body__refuses_what_is_not_a_json_object(body: bytes, code: str) -> None:
    with pytest.raises(CommandError) as caught:
        read_body(body)
    assert caught.value.code == code


def test_seen_fields__keeps_short_texts_and_object_params_only() -> None:
    seen = seen_fields({"device_id": "x" * 100, "connector": 4, "params": "no", "action": "on"})
    assert seen.device_id == "x" * 64 and seen.connector is None
    assert seen.params is None and seen.action == "on"


def test_tokens__name_the_caller_from_lines_or_json() -> None:
    lines = CallerTokens.parse(
        "# callers\noperator:aaaaaaaaaaaaaaaaaaaa\n\nci:bbbbbbbbbbbbbbbbbbbb\n"
    )
    assert lines.caller("Bearer bbbbbbbbbbbbbbbbbbbb") == "ci"
    loaded = CallerTokens.parse(json.dumps({"ops": "cccccccccccccccccccc"}))
    assert loaded.caller("bearer cccccccccccccccccccc") == "ops"
    assert loaded.names == ("ops",)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Basic abc", "invalid_authorization"),
        ("Bearer ", "invalid_authorization"),
        ("Bearer aaaaaaaaaaaaaaaaaaab", "invalid_token"),
    ],
)
def test_tokens__refuse_a_missing_or_wrong_token_with_401(header: str | None, code: str) -> None:
    tokens = CallerTokens.parse("operator:aaaaaaaaaaaaaaaaaaaa")
    with pytest.raises(CommandError) as caught:
        tokens.caller(header)
    assert (caught.value.status, caught.value.code) == (401, code)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nobody\n",
        "operator",
        "operator:short",
        "bad name:aaaaaaaaaaaaaaaaaaaa",
        "a:aaaaaaaaaaaaaaaaaaaa\na:bbbbbbbbbbbbbbbbbbbb",
        "a:aaaaaaaaaaaaaaaaaaaa\nb:aaaaaaaaaaaaaaaaaaaa",
        "{not json",
        '{"a": 1}',
    ],
)
def test_tokens__refuse_an_unusable_secret_without_quoting_it(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CallerTokens.parse(text)
    assert "aaaaaaaaaaaaaaaaaaaa" not in str(caught.value)


def test_read_body__json_nested_deeper_than_the_recursion_limit_is_invalid_json() -> None:
    # found by fuzzing: a 4 KB body of brackets raised RecursionError, answered 500
    with pytest.raises(CommandError) as refused:
        read_body(b"[" * 2000 + b"]" * 2000)
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
