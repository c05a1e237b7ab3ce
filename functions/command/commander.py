"""Command requests: authenticate, check, record, publish, wait for the device, answer.

Routes (paths relative to ``/function/command``), every one behind a bearer token:

* ``POST /`` ``{"device_id", "connector", "component", "action", "params", "wait_s"}`` →
  200 ``{"command_id", "status": "ok"|"rejected"|"expired", "detail", ...}`` when the device
  answered within ``wait_s``, else 202 ``{"command_id", "status": "sent", ...}``
* ``GET /<command_id>`` → 200 with the command's audit row
* ``GET /?device_id=<id>&limit=<1..100>&before=<command_id>`` → 200 ``{"commands": [...],
  "next_before"}``, newest first

Order of a POST: the caller is authenticated, the body checked (size, type, JSON, fields,
action and parameters), the target looked up (device known and active, component at that
connector in its template); only then is the ``device_command`` row written (``pending``),
the command published, the row marked ``sent``, and the reply awaited. A refused request by an
authenticated caller leaves a ``refused`` row naming the reason; nothing is published for it.
Errors are ``{"error": <code>, "message": <text>}``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from f2lib.contracts.commands import ALL_ACTIONS, MAX_WAIT_S, CommandMessage, iso_utc
from f2lib.contracts.devices import is_device_id
from f2lib.contracts.topics import command_topic, reply_topic
from f2lib.errors import BrokerError, CommandError, StoreError
from f2lib.httpfn import Request, Response
from f2lib.metrics import FunctionMetrics

from .link import HeardReply, ReplyWaiter
from .requests import CommandRequest, SeenFields, parse_command, read_body, seen_fields
from .store import CommandRow, Target, row_json
from .tokens import CallerTokens

logger = logging.getLogger(__name__)

PATH_PREFIX = "/function/command"
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CommandLimits:
    """Request limits with their named defaults."""

    max_body_bytes: int = 8 * 1024
    max_wait_s: float = MAX_WAIT_S
    # A command expires this long after it was asked for (at least its wait): a device that
    # gets it later (a queued session, a slow network) must not unlock a door any more.
    expiry_s: float = 30.0


class Store(Protocol):
    """The audit trail and registry look-up the commander needs (``store.CommandStore``)."""

    def target(self, device_id: str, connector: str, component: str) -> Target | None: ...

    def insert(self, row: CommandRow) -> None: ...

    def mark_sent(self, command_id: str, published_at: dt.datetime) -> None: ...

    def mark_failed(self, command_id: str, error: str, message: str) -> None: ...

    def record_reply(
        self,
        command_id: str,
        device_id: str,
        result: str,
        detail: str | None,
        answered_at: dt.datetime,
        via: str,
    ) -> str: ...

    def get(self, command_id: str) -> dict[str, Any] | None: ...

    def list_for_device(
        self, device_id: str, *, limit: int, before: str | None = None
    ) -> list[dict[str, Any]]: ...


class Link(Protocol):
    """The MQTT side the commander needs (``link.CommandLink``)."""

    def expect(self, command_id: str, device_id: str) -> ReplyWaiter: ...

    def forget(self, command_id: str) -> None: ...

    def publish(
        self, topic: str, payload: bytes, *, response_topic: str, correlation: str, expiry_s: int
    ) -> None: ...


def _refuse(status: int, code: str, message: str) -> CommandError:
    return CommandError(message, status=status, code=code)


def action_label(action: str | None) -> str:
    """The metrics label of an action: a known action, else ``unknown``."""
    return action if action in ALL_ACTIONS else "unknown"


class Commander:
    """The command API over the audit store and the MQTT link."""

    def __init__(
        self,
        *,
        tokens: CallerTokens,
        store: Store,
        link: Callable[[], Link],
        metrics: FunctionMetrics,
        limits: CommandLimits | None = None,
        clock: Clock = utc_now,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.tokens = tokens
        self.store = store
        self._link = link
        self.metrics = metrics
        self.limits = limits or CommandLimits()
        self.clock = clock
        self.new_id = new_id

    def dispatch(self, request: Request) -> Response:
        path = request.path.split("?")[0]
        if path.startswith(PATH_PREFIX):
            path = path[len(PATH_PREFIX) :]
        parts = [p for p in path.split("/") if p]
        method = request.method.upper()
        caller = self.tokens.caller(request.header("Authorization"))
        if not parts:
            if method == "POST":
                return self.send(caller, request)
            if method == "GET":
                return self.list_commands(request.query)
            raise _refuse(405, "method_not_allowed", "POST a command or GET a listing")
        if len(parts) == 1:
            if method != "GET":
                raise _refuse(405, "method_not_allowed", "use GET on a command")
            return self.describe(parts[0])
        raise _refuse(404, "not_found", "no such route")

    # -- POST ---------------------------------------------------------------------------------

    def send(self, caller: str, request: Request) -> Response:
        seen = SeenFields()
        try:
            self._check_envelope(request)
            data = read_body(request.body)
            seen = seen_fields(data)
            command = parse_command(data, max_wait_s=self.limits.max_wait_s)
            target = self._target(command)
        except CommandError as exc:
            self._refused(caller, seen, exc)
            raise
        return self._execute(caller, command, target)

    def _check_envelope(self, request: Request) -> None:
        if len(request.body) > self.limits.max_body_bytes:
            raise _refuse(413, "body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _refuse(415, "unsupported_media_type", "Content-Type must be application/json")

    def _target(self, command: CommandRequest) -> Target:
        target = self.store.target(command.device_id, command.connector, command.component)
        if target is None:
            raise _refuse(404, "unknown_device", f"device {command.device_id} is not registered")
        if target.device_status != "active":
            raise _refuse(
                409,
                "device_not_active",
                f"device {command.device_id} is {target.device_status}; it takes no command",
            )
        if target.connector_mode is None:
            raise _refuse(
                422,
                "component_not_in_template",
                f"device {command.device_id} has no {command.component} at {command.connector}",
            )
        return target

    def _refused(self, caller: str, seen: SeenFields, exc: CommandError) -> None:
        """Record the refused attempt (a failure to record it does not change the answer)."""
        self.metrics.command(action_label(seen.action), "refused")
        row = CommandRow(
            command_id=self.new_id(),
            requested_by=caller,
            requested_at=self.clock(),
            status="refused",
            device_id=seen.device_id,
            connector=seen.connector,
            component=seen.component,
            action=seen.action,
            params=seen.params,
            result={"error": exc.code, "message": str(exc)},
        )
        try:
            self.store.insert(row)
        except StoreError as store_exc:
            logger.warning("refusal %s by %s not recorded: %s", exc.code, caller, store_exc)

    def _execute(self, caller: str, command: CommandRequest, target: Target) -> Response:
        assert target.connector_mode is not None
        command_id = self.new_id()
        requested_at = self.clock()
        lifetime = max(command.wait_s, self.limits.expiry_s)
        expires_at = requested_at + dt.timedelta(seconds=lifetime)
        topic = command_topic(
            command.device_id, target.connector_mode, command.connector, command.component
        )
        message = CommandMessage(
            command_id=command_id,
            action=command.action,
            params=command.params,
            expires_at=expires_at,
        )
        self.store.insert(
            CommandRow(
                command_id=command_id,
                requested_by=caller,
                requested_at=requested_at,
                status="pending",
                device_id=command.device_id,
                connector=command.connector,
                connector_mode=target.connector_mode,
                component=command.component,
                action=command.action,
                params=command.params,
                expires_at=expires_at,
            )
        )
        label = action_label(command.action)
        heard: HeardReply | None = None
        try:
            link = self._link()
            waiter = link.expect(command_id, command.device_id)
            try:
                link.publish(
                    topic,
                    message.to_bytes(),
                    response_topic=reply_topic(command.device_id),
                    correlation=command_id,
                    expiry_s=math.ceil(lifetime),
                )
                self._mark_sent(command_id)
                logger.info(
                    "command %s %s sent to %s by %s", command_id, command.action, topic, caller
                )
                if command.wait_s > 0:
                    heard = waiter.wait(command.wait_s)
            finally:
                link.forget(command_id)
        except BrokerError as exc:
            logger.warning("command %s to %s not published: %s", command_id, topic, exc)
            self.metrics.command(label, "failed")
            try:
                self.store.mark_failed(command_id, "broker_unavailable", str(exc))
            except StoreError as store_exc:
                logger.warning("command %s not marked failed: %s", command_id, store_exc)
            raise
        if heard is None:
            self.metrics.command(label, "sent")
            return Response(
                202,
                {
                    "command_id": command_id,
                    "status": "sent",
                    "device_id": command.device_id,
                    "topic": topic,
                    "expires_at": iso_utc(expires_at),
                },
            )
        return self._answered(command_id, command, heard, requested_at, label)

    def _mark_sent(self, command_id: str) -> None:
        """Published: a database hiccup now must not turn a sent command into an error."""
        try:
            self.store.mark_sent(command_id, self.clock())
        except StoreError as exc:
            logger.warning("command %s published but not marked sent: %s", command_id, exc)

    def _answered(
        self,
        command_id: str,
        command: CommandRequest,
        heard: HeardReply,
        requested_at: dt.datetime,
        label: str,
    ) -> Response:
        reply = heard.reply
        try:
            outcome = self.store.record_reply(
                command_id,
                command.device_id,
                reply.result,
                reply.detail,
                heard.received_at,
                "command",
            )
        except StoreError as exc:  # the bridge forwards the same reply: the late path records it
            logger.warning("reply to %s not recorded now: %s", command_id, exc)
            outcome = "recorded"
        latency = (heard.received_at - requested_at).total_seconds()
        self.metrics.reply_received("in_time", latency)
        self.metrics.command(label, reply.result)
        if outcome != "recorded":
            # The bridge forwards the same reply; the reply function may record it first.
            logger.info("reply to %s recorded by the other path (%s)", command_id, outcome)
        return Response(
            200,
            {
                "command_id": command_id,
                "status": reply.result,
                "detail": reply.detail,
                "device_id": command.device_id,
                "answered_at": iso_utc(heard.received_at),
                "reply_latency_s": round(latency, 6),
            },
        )

    # -- GET ----------------------------------------------------------------------------------

    def describe(self, command_id: str) -> Response:
        try:
            wanted = str(uuid.UUID(command_id))
        except ValueError as exc:
            raise _refuse(400, "invalid_command_id", "a command id is a UUID") from exc
        row = self.store.get(wanted)
        if row is None:
            raise _refuse(404, "unknown_command", f"no command {wanted}")
        return Response(200, row_json(row))

    def list_commands(self, query: Mapping[str, str]) -> Response:
        device_id = (query.get("device_id") or "").strip().lower()
        if not is_device_id(device_id):
            raise _refuse(400, "invalid_device_id", "give ?device_id=f2-<12 hex digits>")
        raw_limit = query.get("limit")
        try:
            limit = DEFAULT_LIST_LIMIT if raw_limit in (None, "") else int(str(raw_limit))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _refuse(400, "invalid_limit", f"limit must be 1..{MAX_LIST_LIMIT}")
        before = query.get("before") or None
        if before is not None:
            try:
                before = str(uuid.UUID(before))
            except ValueError as exc:
                raise _refuse(400, "invalid_before", "before must be a command id") from exc
        rows = self.store.list_for_device(device_id, limit=limit, before=before)
        next_before = str(rows[-1]["command_id"]) if len(rows) == limit else None
        return Response(
            200,
            {
                "device_id": device_id,
                "commands": [row_json(r) for r in rows],
                "next_before": next_before,
            },
        )
