"""Realistic F2 traffic: per-component behaviour and the payloads the devices publish.

Payloads follow the contract in DESIGN.md: ``{"timestamp", "status"}`` for strike, siren and
motion sensor; a ``{"timestamp", "<member>-<n>": bool, ...}`` map for door sensors and exit
buttons; ``{"timestamp", "data": "b'...'"}`` (a Python bytes literal as text) for QR/NFC
readers; ``{"timestamp", "data": "<hex>"}`` for RS-485 sensors, encoded with the data point's
width, signedness and scaling so that decoding gives the simulated value back.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from f2lib.errors import SimulatorError
from infra.tools.simulator.catalogue import ComponentSpec

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
DEFAULT_HEX_WIDTH_BITS = 16

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """The devices' format, in UTC: ``2023-05-26 18:34:04.928538``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIMESTAMP_FORMAT)


# --- value encodings ---------------------------------------------------------------------------


def hex_range(width_bits: int, signed: bool) -> tuple[int, int]:
    """The raw integers a ``width_bits`` register holds."""
    if signed:
        return -(1 << (width_bits - 1)), (1 << (width_bits - 1)) - 1
    return 0, (1 << width_bits) - 1


def encode_hex(value: float, scaling_factor: float, width_bits: int | None, signed: bool) -> str:
    """``value`` as the register a decoder turns back into it: round(value / scale), two's
    complement at ``width_bits`` when signed, upper-case, zero-padded to the width's digits.

    Without a width, 16 bits (four digits, which is what a decoder infers from the text).
    Values beyond the register are clamped to it.
    """
    if scaling_factor == 0:
        raise SimulatorError("scaling_factor 0 cannot encode a value")
    width = width_bits or DEFAULT_HEX_WIDTH_BITS
    low, high = hex_range(width, signed)
    raw = min(max(round(value / scaling_factor), low), high)
    if raw < 0:
        raw += 1 << width
    return f"{raw:0{(width + 3) // 4}X}"


def decode_hex(data: str, scaling_factor: float, width_bits: int | None, signed: bool) -> float:
    """The inverse of ``encode_hex`` (the simulator's own check; the product decodes elsewhere)."""
    width = width_bits or len(data) * 4
    raw = int(data, 16)
    if signed and raw >= 1 << (width - 1):
        raw -= 1 << width
    return raw * scaling_factor


def bytes_literal(data: bytes) -> str:
    """``data`` written as Python writes a bytes literal: ``b'"Hello World"'``."""
    return repr(bytes(data))


# --- behaviour ---------------------------------------------------------------------------------


class Behaviour:
    """What one component reports, event after event; deterministic given its RNG."""

    kind = "component"
    weight = 1.0

    def __init__(self, spec: ComponentSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def measurements(self, fields: dict[str, Any]) -> int:
        """How many measurements the decoder makes of these fields."""
        return 1

    def current(self) -> dict[str, Any] | None:
        """The fields of the component's present state, when it has one to report."""
        return None


class StatusBehaviour(Behaviour):
    """strike, siren, motion sensor: ``status`` changes; sirens rarely sound.

    A command ``hold``s the state (an unlocked strike stays unlocked, a sounding siren sounds)
    until ``release``: events in between report the held state.
    """

    kind = "status"

    def __init__(self, spec: ComponentSpec, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.state = False
        self.held = False
        ctype = spec.component_type
        # Probability that an event switches the component on when it is off.
        self.on_probability = {"siren": 0.15, "motion-sensor": 0.6}.get(ctype, 1.0)
        self.weight = {"siren": 0.5, "motion-sensor": 2.0, "strike": 2.0}.get(ctype, 1.0)

    def fields(self) -> dict[str, Any]:
        if self.held:
            return {"status": self.state}
        if self.state or self.rng.random() < self.on_probability:
            self.state = not self.state
        return {"status": self.state}

    def current(self) -> dict[str, Any]:
        return {"status": self.state}

    def hold(self, state: bool) -> None:
        self.state, self.held = state, True

    def release(self, state: bool) -> None:
        self.state, self.held = state, False


class MapBehaviour(Behaviour):
    """door-sensors / exit-buttons: one member changes per event, the whole map is sent."""

    kind = "map"

    def __init__(self, spec: ComponentSpec, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.state = dict.fromkeys(spec.member_names(), False)
        self.weight = 2.0 if spec.component_type == "door-sensors" else 1.0

    def fields(self) -> dict[str, Any]:
        member = self.rng.choice(list(self.state))
        self.state[member] = not self.state[member]
        return dict(self.state)

    def measurements(self, fields: dict[str, Any]) -> int:
        return len(fields)


class ReaderBehaviour(Behaviour):
    """QR/NFC reader: card-like reads from a small deck of badges, now and then a visitor QR."""

    kind = "reader"
    weight = 1.5

    def __init__(self, spec: ComponentSpec, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.deck = [self._card() for _ in range(12)]

    def _card(self) -> bytes:
        rng = self.rng
        style = rng.randrange(4)
        if style == 0:  # MIFARE 7-byte UID, as an NFC reader reports it
            uid = bytes([0x04, *(rng.randrange(256) for _ in range(6))])
            return uid.hex(":").upper().encode()
        if style == 1:  # Wiegand 26: facility code and card number
            return f"W26:{rng.randrange(1, 256):03d}:{rng.randrange(1, 65536):05d}".encode()
        if style == 2:  # a QR badge holding JSON
            badge = {
                "badge": f"EMP-{rng.randrange(1, 10**6):06d}",
                "site": f"HQ-{rng.randrange(1, 5)}",
            }
            return json.dumps(badge, separators=(",", ":")).encode()
        # a quoted QR string, as in the original examples ("Hello World")
        return f'"VISITOR-{rng.getrandbits(24):06X}"'.encode()

    def fields(self) -> dict[str, Any]:
        # mostly the deck's badges; now and then a card never seen before
        card = self._card() if self.rng.random() < 0.1 else self.rng.choice(self.deck)
        return {"data": bytes_literal(card)}


@dataclass(frozen=True, slots=True)
class Quantity:
    """A physical quantity: where it starts, how far it drifts per reading, its bounds."""

    start: float
    spread: float
    step: float
    low: float
    high: float


_QUANTITIES: dict[str, Quantity] = {
    "celsius": Quantity(21.0, 3.0, 0.3, -20.0, 50.0),
    "°c": Quantity(21.0, 3.0, 0.3, -20.0, 50.0),
    "percent": Quantity(45.0, 10.0, 0.8, 5.0, 95.0),
    "%": Quantity(45.0, 10.0, 0.8, 5.0, 95.0),
    "hpa": Quantity(1013.0, 8.0, 0.4, 950.0, 1060.0),
    "pa": Quantity(101_300.0, 800.0, 40.0, 95_000.0, 106_000.0),
    "ppm": Quantity(600.0, 150.0, 25.0, 400.0, 2500.0),
    "lux": Quantity(300.0, 150.0, 30.0, 0.0, 2000.0),
    "lx": Quantity(300.0, 150.0, 30.0, 0.0, 2000.0),
}
_DEFAULT_QUANTITY = Quantity(50.0, 10.0, 1.0, 0.0, 100.0)


class SensorBehaviour(Behaviour):
    """RS-485 sensor: a bounded random walk in the unit's plausible range, sent as hex."""

    kind = "sensor"
    weight = 3.0

    def __init__(self, spec: ComponentSpec, rng: random.Random) -> None:
        super().__init__(spec, rng)
        quantity = _QUANTITIES.get((spec.units or "").strip().lower(), _DEFAULT_QUANTITY)
        width = spec.value_width_bits or DEFAULT_HEX_WIDTH_BITS
        raw_low, raw_high = hex_range(width, spec.value_signed)
        scale = spec.scaling_factor
        bounds = sorted((raw_low * scale, raw_high * scale))
        self.low = max(quantity.low, bounds[0])
        self.high = min(quantity.high, bounds[1])
        if self.low > self.high:  # the register cannot hold the usual range: use the register's
            self.low, self.high = bounds
        self.step = quantity.step
        self.value = min(
            max(quantity.start + rng.uniform(-quantity.spread, quantity.spread), self.low),
            self.high,
        )

    def fields(self) -> dict[str, Any]:
        self.value = min(max(self.value + self.rng.gauss(0.0, self.step), self.low), self.high)
        spec = self.spec
        return {
            "data": encode_hex(
                self.value, spec.scaling_factor, spec.value_width_bits, spec.value_signed
            )
        }


def behaviour_for(spec: ComponentSpec, rng: random.Random) -> Behaviour:
    """The behaviour that matches the component's encoding."""
    kinds: dict[str, type[Behaviour]] = {
        "boolean": StatusBehaviour,
        "boolean_map": MapBehaviour,
        "raw_string": ReaderBehaviour,
        "hex_to_float": SensorBehaviour,
    }
    try:
        return kinds[spec.encoding_type](spec, rng)
    except KeyError:
        raise SimulatorError(
            f"cannot simulate encoding {spec.encoding_type!r} of {spec.component}"
        ) from None


# --- a device's message stream -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of one device, and what the decoder should make of it."""

    topic: str
    payload: bytes
    timestamp: str
    measurements: int


class MessageStream:
    """The messages of one device: each component once (a boot report), then weighted events.

    Deterministic for a given seed: the same components and RNG give the same topics and
    values; only timestamps follow the clock (strictly increasing per device, so that the
    natural key of every message is unique).
    """

    def __init__(
        self,
        device_id: str,
        components: Sequence[ComponentSpec],
        rng: random.Random,
        clock: Clock = utc_now,
    ) -> None:
        if not components:
            raise SimulatorError(f"device {device_id} has no components to simulate")
        self.device_id = device_id
        self.rng = rng
        self.clock = clock
        self.behaviours = [behaviour_for(spec, rng) for spec in components]
        self.topics = [spec.topic(device_id) for spec in components]
        self._weights = [b.weight for b in self.behaviours]
        self._boot = list(range(len(self.behaviours)))
        rng.shuffle(self._boot)
        self._last: datetime | None = None

    def _pick(self) -> int:
        if self._boot:
            return self._boot.pop(0)
        return self.rng.choices(range(len(self.behaviours)), weights=self._weights)[0]

    def _now(self) -> datetime:
        now = self.clock().astimezone(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now

    def next_message(self) -> Message:
        index = self._pick()
        return self._message(index, self.behaviours[index].fields())

    def component_index(self, connector: str, component: str) -> int | None:
        """The index of the component at ``connector`` named ``component`` (``strike-1``)."""
        for index, behaviour in enumerate(self.behaviours):
            if behaviour.spec.connector == connector and behaviour.spec.component == component:
                return index
        return None

    def report(self, index: int) -> Message | None:
        """A message with the component's present state (after a command changed it)."""
        fields = self.behaviours[index].current()
        return None if fields is None else self._message(index, fields)

    def _message(self, index: int, fields: dict[str, Any]) -> Message:
        behaviour = self.behaviours[index]
        timestamp = format_timestamp(self._now())
        payload = json.dumps({"timestamp": timestamp, **fields}, separators=(", ", ": "))
        return Message(
            self.topics[index], payload.encode(), timestamp, behaviour.measurements(fields)
        )
