"""The fault matrix: which parts are killed or paused, when, and on how many Kafka brokers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["kill", "pause"]
# Parts a fault can name: the stack's own, a function's replica, or a Kafka node by role.
PARTS = ("bridge", "connector", "gateway", "kafka", "postgres", "mosquitto", "decode", "sink",
         "kafka-controller", "kafka-follower")  # fmt: skip
FAULT_AT_S = 8.0  # into the publishing: records are in flight everywhere by then
# Longer than every timeout on the path: the bridge's delivery timeout (30 s) plus its stall
# margin (15 s), the connector's session (10 s) and invocation (65 s), a function's (60 s).
PAUSE_S = 70.0


@dataclass(frozen=True)
class Fault:
    """``action`` done to ``part`` ``at_s`` seconds into the publishing (a pause lasts
    ``pause_s``, then the part is continued)."""

    action: Action
    part: str
    at_s: float = FAULT_AT_S
    pause_s: float = 0.0

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"no part {self.part!r}; one of {', '.join(PARTS)}")
        if (self.action == "pause") != (self.pause_s > 0):
            raise ValueError("a pause needs pause_s > 0, a kill none")

    def describe(self) -> str:
        return f"{self.action} {self.part}" + (f" {self.pause_s:.0f}s" if self.pause_s else "")


@dataclass(frozen=True)
class Scenario:
    """One run of the workload with its faults; ``brokers`` Kafka nodes in the stack."""

    name: str
    faults: tuple[Fault, ...] = field(default_factory=tuple)
    brokers: int = 1
    note: str = ""


def kill(part: str, at_s: float = FAULT_AT_S) -> Fault:
    return Fault("kill", part, at_s)


def pause(part: str, seconds: float = PAUSE_S, at_s: float = FAULT_AT_S) -> Fault:
    return Fault("pause", part, at_s, seconds)


SINGLE = ("bridge", "connector", "decode", "sink", "kafka", "postgres", "mosquitto", "gateway")
PAIRS = (
    ("bridge", "kafka"),
    ("connector", "decode"),
    ("sink", "postgres"),
    ("gateway", "connector"),
    ("kafka", "postgres"),
    ("bridge", "mosquitto"),
)


def matrix() -> list[Scenario]:
    """The scenarios of ``make chaos``, in the order they run."""
    scenarios = [Scenario("baseline (no fault)")]
    scenarios += [Scenario(f"kill -9 {part}", (kill(part),)) for part in SINGLE]
    scenarios += [Scenario(f"pause {part} {PAUSE_S:.0f}s", (pause(part),))
                  for part in ("kafka", "postgres")]  # fmt: skip
    scenarios += [Scenario(f"kill -9 {a} + {b}", (kill(a), kill(b))) for a, b in PAIRS]
    scenarios.append(
        Scenario(
            "kill -9 mosquitto while the bridge lags",
            (pause("kafka", 40.0), kill("mosquitto", FAULT_AT_S + 20.0)),
            note="Kafka paused: the broker queues for the bridge; the kill loses what it queued "
            "since its last snapshot (at most 500)",
        )
    )
    scenarios += [
        Scenario("3 brokers: kill -9 a broker", (kill("kafka-follower"),), brokers=3),
        Scenario("3 brokers: kill -9 the controller", (kill("kafka-controller"),), brokers=3),
    ]
    return scenarios


def select(scenarios: list[Scenario], wanted: list[str]) -> list[Scenario]:
    """The scenarios whose name contains any of ``wanted`` (all when empty)."""
    if not wanted:
        return scenarios
    chosen = [s for s in scenarios if any(w in s.name for w in wanted)]
    if not chosen:
        raise ValueError(f"no scenario matches {wanted}; names: {[s.name for s in scenarios]}")
    return chosen
