"""A command request's body, read and checked without touching anything: what, at which component.

``{"device_id", "connector", "component", "action", "params", "wait_s"}``: the device and its
connector and component named as in the topic (``J1``, ``strike-1``), an action of that
component's kind with its parameters (``f2lib.contracts.commands``), and how long to wait for
the device's reply (default 5 s, at most 30). Every refusal is a CommandError with a code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from f2lib.contracts.commands import DEFAULT_WAIT_S, MAX_WAIT_S, check_action
from f2lib.contracts.devices import is_device_id
from f2lib.contracts.topics import CONNECTORS, parse_component
from f2lib.errors import JSON_DECODE_ERRORS, CommandError, TopicError

FIELDS = frozenset({"device_id", "connector", "component", "action", "params", "wait_s"})
REQUIRED = ("device_id", "connector", "component", "action")
SEEN_CHARS = 64  # what a refused audit row keeps of a text field


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A well-formed command: the parameters are those of the action, defaults filled in."""

    device_id: str
    connector: str
    component: str
    component_type: str
    component_id: str | None
    action: str
    params: dict[str, Any]
    wait_s: float


@dataclass(frozen=True, slots=True)
class SeenFields:
    """What could be read of a refused request, for its audit row (texts cut short)."""

    device_id: str | None = None
    connector: str | None = None
    component: str | None = None
    action: str | None = None
    params: dict[str, Any] | None = None


def _refuse(code: str, message: str, status: int = 400) -> CommandError:
    return CommandError(message, status=status, code=code)


def read_body(body: bytes) -> dict[str, Any]:
    """The JSON object of the body; CommandError ``invalid_json`` / ``invalid_body`` otherwise."""
    try:
        data = json.loads(body)
    except JSON_DECODE_ERRORS as exc:
        raise _refuse("invalid_json", "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _refuse("invalid_body", "body must be a JSON object")
    return data


def seen_fields(data: dict[str, Any]) -> SeenFields:
    def text(name: str) -> str | None:
        value = data.get(name)
        return value[:SEEN_CHARS] if isinstance(value, str) else None

    params = data.get("params")
    return SeenFields(
        device_id=text("device_id"),
        connector=text("connector"),
        component=text("component"),
        action=text("action"),
        params=params if isinstance(params, dict) else None,
    )


def _wait(value: Any, max_wait_s: float) -> float:
    if value is None:
        return min(DEFAULT_WAIT_S, max_wait_s)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refuse("invalid_field", "wait_s must be a number of seconds")
    if not 0 <= value <= max_wait_s:
        raise _refuse("invalid_wait", f"wait_s must be between 0 and {max_wait_s:g} seconds")
    return float(value)


def parse_command(data: dict[str, Any], *, max_wait_s: float = MAX_WAIT_S) -> CommandRequest:
    """Check the request's fields; CommandError (400, or 422 for the action) names the first
    problem: unknown, missing or mistyped field, device id, connector, component, action,
    parameters, wait."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise _refuse("unknown_field", f"unknown field(s): {', '.join(unknown)}")
    for name in REQUIRED:
        if name not in data:
            raise _refuse("missing_field", f"field {name!r} is required")
        if not isinstance(data[name], str) or not data[name]:
            raise _refuse("invalid_field", f"field {name!r} must be a non-empty string")
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _refuse("invalid_field", "field 'params' must be a JSON object")
    device_id = data["device_id"].strip().lower()
    if not is_device_id(device_id):
        raise _refuse("invalid_device_id", "device_id must be f2-<12 hex digits>")
    connector = data["connector"]
    if connector not in CONNECTORS:
        raise _refuse("invalid_connector", f"connector must be one of {', '.join(CONNECTORS)}")
    component = data["component"]
    try:
        component_type, component_id = parse_component(component)
    except TopicError as exc:
        raise _refuse("invalid_component", str(exc)) from exc
    action = data["action"]
    checked = check_action(component_type, action, params)
    return CommandRequest(
        device_id=device_id,
        connector=connector,
        component=component,
        component_type=component_type,
        component_id=component_id,
        action=action,
        params=checked,
        wait_s=_wait(data.get("wait_s"), max_wait_s),
    )
