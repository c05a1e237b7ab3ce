"""Who the simulated devices are: a model mix, and deterministic MACs and serials from a seed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from f2lib.contracts.devices import MODELS
from f2lib.errors import SimulatorError

# Locally administered, unicast: never a real vendor's address.
MAC_PREFIX = bytes((0x02, 0xF2))


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """One simulated controller: ``f2-<mac>``, its model and serial number."""

    model: str
    mac: str  # 12 lower-case hex digits
    serial_number: str
    index: int  # position in the fleet

    @property
    def device_id(self) -> str:
        return f"f2-{self.mac}"

    @property
    def mac_colons(self) -> str:
        return ":".join(self.mac[i : i + 2] for i in range(0, 12, 2))


def device_mac(seed: int, model: str, n: int) -> str:
    """The MAC of the ``n``-th device of ``model`` for ``seed``: 02:f2 plus 4 hashed bytes.

    It depends on the model and its count only, so changing the mix never gives a device
    another model (its certificate and registry row stay right).
    """
    digest = hashlib.sha256(f"f2pipe-simulator/{seed}/{model}/{n}".encode()).digest()
    return (MAC_PREFIX + digest[:4]).hex()


def parse_mix(spec: str, devices: int | None) -> dict[str, int]:
    """``all`` / ``F2-212,F2-401`` (``devices`` spread round robin) or ``F2-212:2,F2-401:1``.

    Returns the count per model in the catalogue's model order.
    """
    spec = spec.strip()
    entries = [e.strip() for e in spec.split(",") if e.strip()] if spec.lower() != "all" else []
    models = list(MODELS) if not entries else []
    counts: dict[str, int] = {}
    for entry in entries:
        model, sep, count = entry.partition(":")
        model = model.strip().upper()
        if model not in MODELS:
            raise SimulatorError(
                f"unknown model {model!r} in --models; expected {', '.join(MODELS)}"
            )
        if model in counts or model in models:
            raise SimulatorError(f"model {model} is named twice in --models")
        if sep:
            try:
                counts[model] = int(count)
            except ValueError:
                raise SimulatorError(f"count of {model} in --models is not a number") from None
            if counts[model] < 0:
                raise SimulatorError(f"count of {model} in --models is negative")
        else:
            models.append(model)
    if models and counts:
        raise SimulatorError("--models mixes MODEL:COUNT and bare MODEL entries")
    if models:
        total = len(models) if devices is None else devices
        if total < 0:
            raise SimulatorError("--devices must not be negative")
        counts = {
            m: total // len(models) + (1 if i < total % len(models) else 0)
            for i, m in enumerate(models)
        }
    elif devices is not None and devices != sum(counts.values()):
        raise SimulatorError(
            f"--devices {devices} disagrees with --models (which counts {sum(counts.values())})"
        )
    ordered = {m: counts[m] for m in MODELS if counts.get(m)}
    if not ordered:
        raise SimulatorError("the fleet is empty: give --devices or counts in --models")
    return ordered


def fleet_identities(mix: dict[str, int], seed: int) -> list[DeviceIdentity]:
    """The devices of a mix, model by model; MACs unique (checked)."""
    identities: list[DeviceIdentity] = []
    for model in MODELS:
        for n in range(mix.get(model, 0)):
            mac = device_mac(seed, model, n)
            serial = f"SIM-{model.removeprefix('F2-')}-{mac[4:].upper()}"
            identities.append(DeviceIdentity(model, mac, serial, len(identities)))
    _check_unique([i.mac for i in identities])
    return identities


def _check_unique(macs: Sequence[str]) -> None:
    if len(set(macs)) != len(macs):
        raise SimulatorError("two simulated devices hash to the same MAC; use another --seed")
