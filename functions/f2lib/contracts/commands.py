"""The downlink command contract: actions per component kind, the command and its reply.

A command goes to ``ctrl/<device>/<mode>/<connector>/<component>`` (see ``topics``) as
``{"command_id", "action", "params", "expires_at"}``, MQTT v5 with response topic
``ctrl-resp/<device>`` and correlation data = the command id. The device answers
``{"command_id", "result": "ok"|"rejected"|"expired", "detail"}``. The command function, the
reply function, the simulated devices and the operator CLI all check and build them here.

Actions (parameters are integers unless said otherwise; all required unless a default is given):

* strike  ``unlock {duration_s 1..60}``, ``lock {}``
* siren   ``on {duration_s 1..300}``, ``off {}``
* reader  ``indicator {color green|red|amber, beep bool (default false), duration_s 1..10}``
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from f2lib.errors import CommandError, ReplyError

DEFAULT_WAIT_S = 5.0
MAX_WAIT_S = 30.0
MAX_DETAIL_CHARS = 512
REPLY_RESULTS = ("ok", "rejected", "expired")
# The lifecycle of a device_command row: pending (recorded, not yet published), sent (the broker
# took it), a device's answer, refused (the request was invalid) or failed (not published).
STATUSES = ("pending", "sent", "ok", "rejected", "expired", "refused", "failed")

ReplyResult = Literal["ok", "rejected", "expired"]


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an action: an integer range, a choice of words, or a boolean."""

    kind: Literal["int", "choice", "bool"]
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def required(self) -> bool:
        return self.default is None

    def describe(self) -> str:
        if self.kind == "int":
            return f"an integer {self.low}..{self.high}"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        return "true or false"

    def accepts(self, value: Any) -> bool:
        if self.kind == "int":
            return type(value) is int and self.low <= value <= self.high
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        return isinstance(value, bool)


def _seconds(high: int) -> Param:
    return Param("int", 1, high)


# Component kind -> action -> parameter name -> rule. Kinds absent here take no command.
ACTIONS: Mapping[str, Mapping[str, Mapping[str, Param]]] = {
    "strike": {"unlock": {"duration_s": _seconds(60)}, "lock": {}},
    "siren": {"on": {"duration_s": _seconds(300)}, "off": {}},
    "reader": {
        "indicator": {
            "color": Param("choice", choices=("green", "red", "amber")),
            "beep": Param("bool", default=False),
            "duration_s": _seconds(10),
        }
    },
}
ALL_ACTIONS = tuple(sorted({action for actions in ACTIONS.values() for action in actions}))


def _refuse(code: str, message: str) -> CommandError:
    return CommandError(message, status=422, code=code)


def check_action(component_type: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``action`` on a ``component_type`` with defaults filled in.

    Raises CommandError (422) with code ``component_not_commandable``, ``unknown_action``,
    ``unknown_param``, ``missing_param`` or ``invalid_param``.
    """
    actions = ACTIONS.get(component_type)
    if actions is None:
        commandable = ", ".join(sorted(ACTIONS))
        raise _refuse(
            "component_not_commandable",
            f"a {component_type} takes no command (only {commandable} do)",
        )
    rules = actions.get(action)
    if rules is None:
        raise _refuse(
            "unknown_action",
            f"a {component_type} has no action {action!r}; expected one of "
            + ", ".join(sorted(actions)),
        )
    unknown = sorted(set(params) - set(rules))
    if unknown:
        raise _refuse(
            "unknown_param", f"{action} takes no parameter {', '.join(map(repr, unknown))}"
        )
    checked: dict[str, Any] = {}
    for name, rule in rules.items():
        if name not in params:
            if rule.required:
                raise _refuse("missing_param", f"{action} needs {name} ({rule.describe()})")
            checked[name] = rule.default
            continue
        if not rule.accepts(params[name]):
            raise _refuse("invalid_param", f"{name} must be {rule.describe()}")
        checked[name] = params[name]
    return checked


def iso_utc(moment: datetime) -> str:
    """``2026-12-01T10:00:00.123456+00:00``: the contract's way to write a time."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class CommandMessage(BaseModel):
    """The payload of a ``ctrl/...`` message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    action: str = Field(min_length=1, max_length=32)
    params: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime

    @field_validator("command_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))

    @field_validator("expires_at")
    @classmethod
    def _zoned(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def to_bytes(self) -> bytes:
        body = {
            "command_id": self.command_id,
            "action": self.action,
            "params": self.params,
            "expires_at": iso_utc(self.expires_at),
        }
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes) -> CommandMessage:
        """Raises ValueError when the payload is not a command."""
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            raise ValueError(f"not a command: {exc.error_count()} problem(s)") from exc


class CommandReply(BaseModel):
    """The payload of a ``ctrl-resp/<device>`` message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    result: ReplyResult
    detail: str | None = Field(default=None)

    @field_validator("command_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))

    @field_validator("detail")
    @classmethod
    def _short(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("detail contains a NUL character")
        return value[:MAX_DETAIL_CHARS] if value is not None else None

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes | str, **context: Any) -> CommandReply:
        """Raises ReplyError (``bad_reply``) when the payload is not a reply."""
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(map(str, e.get('loc', ()))) or 'value'}: {e.get('msg')}"
                for e in exc.errors()[:3]
            )
            raise ReplyError(f"reply is not a command reply: {where}", **context) from exc
