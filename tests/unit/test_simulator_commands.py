"""A simulated device's obedience: what it carries out, refuses, reports, and when."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from f2lib.contracts.commands import CommandMessage
from infra.tools.simulator.catalogue import builtin_components
from infra.tools.simulator.commands import DeviceCommands
from infra.tools.simulator.payloads import MessageStream

DEVICE = "f2-02aa00000001"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@dataclass
class Props:
    CorrelationData: bytes | None = None
    ResponseTopic: str | None = None


class Clocks:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def device(model: str = "F2-403") -> tuple[DeviceCommands, Clocks]:
    clocks = Clocks()
    stream = MessageStream(
        DEVICE, builtin_components(model), random.Random(1), clock=lambda: clocks.wall
    )
    return DeviceCommands(DEVICE, stream, monotonic=lambda: clocks.mono), clocks


def command(
    action: str, params: dict[str, object] | None = None, expires_in: float = 30
) -> tuple[bytes, str]:
    command_id = str(uuid.uuid4())
    message = CommandMessage(
        command_id=command_id,
        action=action,
        params=params or {},
        expires_at=NOW + timedelta(seconds=expires_in),
    )
    return message.to_bytes(), command_id


STRIKE = f"ctrl/{DEVICE}/access-control-mode/J1/strike-1"
SIREN = f"ctrl/{DEVICE}/alarm-mode/J2/siren-1"


def status_of(payload: bytes) -> bool:
    return bool(json.loads(payload)["status"])


def test_unlock__reports_true_at_once_and_false_after_its_duration() -> None:
    commands, clocks = device()
    payload, command_id = command("unlock", {"duration_s": 5})
    answer = commands.handle(STRIKE, payload, Props(command_id.encode(), f"ctrl-resp/{DEVICE}"))
    assert answer is not None and answer.reply.result == "ok"
    assert answer.topic == f"ctrl-resp/{DEVICE}" and answer.correlation == command_id.encode()
    (report,) = answer.reports
    assert report.topic == f"cmnd/{DEVICE}/access-control-mode/J1/strike-1"
    assert status_of(report.payload) is True
    clocks.advance(4.9)
    assert commands.due(clocks.mono) == []
    # a random event while unlocked reports the held state
    index = commands.stream.component_index("J1", "strike-1")
    assert index is not None and commands.stream.behaviours[index].fields() == {"status": True}
    clocks.advance(0.2)
    (locked,) = commands.due(clocks.mono)
    assert status_of(locked.payload) is False
    assert commands.next_due() is None


def test_siren_off__ends_the_siren_before_its_duration_and_the_old_timer_does_nothing() -> None:
    commands, clocks = device()
    on, _ = command("on", {"duration_s": 60})
    answer = commands.handle(SIREN, on, None)
    assert answer is not None and status_of(answer.reports[0].payload) is True
    off, _ = command("off")
    answer = commands.handle(SIREN, off, None)
    assert answer is not None and status_of(answer.reports[0].payload) is False
    clocks.advance(61)
    assert commands.due(clocks.mono) == []


def test_a_second_unlock_extends_the_first() -> None:
    commands, clocks = device()
    commands.handle(STRIKE, command("unlock", {"duration_s": 5})[0], None)
    clocks.advance(3)
    commands.handle(STRIKE, command("unlock", {"duration_s": 5})[0], None)
    clocks.advance(3)
    assert commands.due(clocks.mono) == []
    clocks.advance(2.5)
    assert [status_of(m.payload) for m in commands.due(clocks.mono)] == [False]


def test_reader_indicator__is_ok_and_reports_nothing() -> None:
    commands, _ = device()
    payload, _ = command("indicator", {"color": "red", "beep": True, "duration_s": 2})
    answer = commands.handle(f"ctrl/{DEVICE}/access-control-mode/J1/reader-1", payload, None)
    assert answer is not None and answer.reply.result == "ok" and answer.reports == ()
    assert "red" in (answer.reply.detail or "")


def test_a_command_past_its_expiry_on_the_devices_clock_is_answered_expired() -> None:
    commands, clocks = device()
    payload, _ = command("unlock", {"duration_s": 5}, expires_in=10)
    clocks.advance(11)
    answer = commands.handle(STRIKE, payload, None)
    assert answer is not None and answer.reply.result == "expired" and answer.reports == ()
    assert commands.next_due() is None


def test_what_the_model_cannot_do_is_rejected() -> None:
    commands, _ = device("F2-401")  # sensors only
    payload, _ = command("unlock", {"duration_s": 5})
    answer = commands.handle(f"ctrl/{DEVICE}/access-control-mode/J1/strike-1", payload, None)
    assert answer is not None and answer.reply.result == "rejected"
    assert "strike-1" in (answer.reply.detail or "")
    commands403, _ = device()
    wrong_mode = f"ctrl/{DEVICE}/alarm-mode/J1/strike-1"
    answer = commands403.handle(wrong_mode, payload, None)
    assert answer is not None and answer.reply.result == "rejected"
    bad_params, _ = command("unlock", {"duration_s": 600})
    answer = commands403.handle(STRIKE, bad_params, None)
    assert answer is not None and answer.reply.result == "rejected"
    assert commands403.counters.rejected == 2


def test_a_redelivered_command_gets_its_first_answer_and_is_not_carried_out_again() -> None:
    commands, _clocks = device()
    payload, _ = command("unlock", {"duration_s": 5})
    first = commands.handle(STRIKE, payload, None)
    again = commands.handle(STRIKE, payload, None)
    assert first is not None and again is not None
    assert again.reply == first.reply and again.reports == ()
    assert commands.counters.ok == 1 and commands.counters.received == 2


def test_garbage_is_rejected_when_it_has_a_correlation_id_and_dropped_otherwise() -> None:
    commands, _ = device()
    command_id = str(uuid.uuid4())
    answer = commands.handle(STRIKE, b"garbage", Props(command_id.encode()))
    assert answer is not None and answer.reply.command_id == command_id
    assert answer.reply.result == "rejected"
    assert commands.handle(STRIKE, b"garbage", None) is None
    assert commands.counters.unanswerable == 1
