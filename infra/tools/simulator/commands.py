"""How a simulated device obeys a downlink command: check it, carry it out, answer, report state.

A command on ``ctrl/<device>/<mode>/<connector>/<component>`` is carried out only when it is
for this device, the device has that component at that connector in that mode, the action and
parameters are what the component's kind takes (``f2lib.contracts.commands``), and the device's
own clock is before ``expires_at``; otherwise the answer is ``rejected`` or ``expired``. The
answer goes to the message's response topic (else ``ctrl-resp/<device>``) with its correlation
data. A strike unlocked for N s reports ``status: true`` at once and ``false`` N s later (a
``lock`` ends it early); a siren ``on`` likewise until ``off`` or its duration ends; a reader
indicator changes nothing the device reports. A command seen before (a redelivery) gets its
first answer again and is not carried out twice.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from f2lib.contracts.commands import CommandMessage, CommandReply, check_action
from f2lib.contracts.topics import parse_command_topic, reply_topic
from f2lib.errors import CommandError, TopicError
from infra.tools.simulator.payloads import Message, MessageStream, StatusBehaviour

logger = logging.getLogger(__name__)

REMEMBERED = 256  # command ids whose answer a device keeps, for redeliveries


@dataclass(frozen=True, slots=True)
class Answer:
    """What the device publishes about one command: its reply and any state reports."""

    topic: str
    reply: CommandReply
    correlation: bytes | None
    reports: tuple[Message, ...] = ()

    @property
    def payload(self) -> bytes:
        return self.reply.to_bytes()


@dataclass
class CommandCounters:
    """One device's command figures (written by its shard thread only)."""

    received: int = 0
    ok: int = 0
    rejected: int = 0
    expired: int = 0
    unanswerable: int = 0  # no command id to answer to


@dataclass
class DeviceCommands:
    """The command side of one simulated device."""

    device_id: str
    stream: MessageStream
    monotonic: Callable[[], float] = time.monotonic
    counters: CommandCounters = field(default_factory=CommandCounters)
    _timers: list[tuple[float, int, int, int, bool]] = field(
        default_factory=list, init=False, repr=False
    )
    _generation: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _answered: OrderedDict[str, CommandReply] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _seq: Any = field(default_factory=itertools.count, init=False, repr=False)

    # --- commands -------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, properties: Any = None) -> Answer | None:
        """The device's answer to a command message (None when there is no id to answer)."""
        self.counters.received += 1
        correlation = getattr(properties, "CorrelationData", None)
        answer_to = getattr(properties, "ResponseTopic", None) or reply_topic(self.device_id)
        try:
            command = CommandMessage.parse(payload)
        except ValueError as exc:
            command_id = _uuid_text(correlation)
            if command_id is None:
                self.counters.unanswerable += 1
                logger.info("device %s: unanswerable message on %s", self.device_id, topic)
                return None
            return self._answer(answer_to, correlation, command_id, "rejected", str(exc))
        earlier = self._answered.get(command.command_id)
        if earlier is not None:
            return Answer(answer_to, earlier, correlation)
        result, detail, reports = self._carry_out(topic, command)
        return self._answer(answer_to, correlation, command.command_id, result, detail, reports)

    def _carry_out(
        self, topic: str, command: CommandMessage
    ) -> tuple[str, str, tuple[Message, ...]]:
        if self.stream.clock() >= command.expires_at:
            return "expired", f"expired at {command.expires_at.isoformat()}", ()
        try:
            parts = parse_command_topic(topic)
        except TopicError as exc:
            return "rejected", str(exc), ()
        index = self.stream.component_index(parts.connector, parts.component)
        if parts.device_id != self.device_id or index is None:
            return "rejected", f"this device has no {parts.component} at {parts.connector}", ()
        behaviour = self.stream.behaviours[index]
        if behaviour.spec.connector_mode != parts.connector_mode:
            return "rejected", f"{parts.connector} runs {behaviour.spec.connector_mode}", ()
        try:
            params = check_action(parts.component_type, command.action, command.params)
        except CommandError as exc:
            return "rejected", str(exc), ()
        if parts.component_type == "reader":
            beep = " with a beep" if params["beep"] else ""
            return "ok", f"{params['color']} for {params['duration_s']}s{beep}", ()
        if not isinstance(behaviour, StatusBehaviour):
            return "rejected", f"{parts.component} reports no status", ()
        if command.action in ("unlock", "on"):
            behaviour.hold(True)
            self._schedule(index, params["duration_s"])
            detail = f"{command.action} for {params['duration_s']}s"
        else:
            behaviour.release(False)
            self._generation[index] = self._generation.get(index, 0) + 1
            detail = command.action
        report = self.stream.report(index)
        return "ok", detail, (report,) if report is not None else ()

    def _answer(
        self,
        topic: str,
        correlation: bytes | None,
        command_id: str,
        result: str,
        detail: str,
        reports: tuple[Message, ...] = (),
    ) -> Answer:
        reply = CommandReply.model_validate(
            {"command_id": command_id, "result": result, "detail": detail}
        )
        setattr(self.counters, result, getattr(self.counters, result) + 1)
        self._answered[command_id] = reply
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)
        return Answer(topic, reply, correlation, reports)

    # --- timers ---------------------------------------------------------------------------------
    def _schedule(self, index: int, seconds: float) -> None:
        generation = self._generation.get(index, 0) + 1
        self._generation[index] = generation
        due = self.monotonic() + seconds
        heapq.heappush(self._timers, (due, next(self._seq), index, generation, False))

    def next_due(self) -> float | None:
        """The monotonic time of the next state change, None when none is pending."""
        return self._timers[0][0] if self._timers else None

    def due(self, now: float) -> list[Message]:
        """Carry out the state changes due by ``now`` (a held strike locks again); their reports."""
        reports: list[Message] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, index, generation, state = heapq.heappop(self._timers)
            if self._generation.get(index) != generation:
                continue  # ended early by lock/off, or extended by a newer command
            behaviour = self.stream.behaviours[index]
            if isinstance(behaviour, StatusBehaviour):
                behaviour.release(state)
                report = self.stream.report(index)
                if report is not None:
                    reports.append(report)
        return reports


def _uuid_text(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        return CommandReply.model_validate(
            {"command_id": data.decode("utf-8"), "result": "rejected"}
        ).command_id
    except (UnicodeDecodeError, ValueError):
        return None
