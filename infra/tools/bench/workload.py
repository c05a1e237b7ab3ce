"""The benchmark input: simulated F2 devices registered in the devices database, and their traffic.

Devices of every model are inserted into ``device`` (their template fills
``device_parameters``, as provisioning does) and their components read back from that view,
so that the messages are exactly what the decoder expects: the simulator's per-component
behaviour (``infra.tools.simulator.payloads``), the contract's topics and payloads.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2

from f2lib.contracts.devices import MODELS
from f2lib.contracts.records import RawRecord
from f2lib.errors import BenchError
from infra.tools.simulator.catalogue import ComponentSpec, load_device_components
from infra.tools.simulator.payloads import Clock, Message, MessageStream, utc_now

DEVICE_PREFIX = "f2-be0c"  # f2-be0c<8 hex>: 12 hex digits after "f2-"


def device_ids(count: int, offset: int = 0) -> list[tuple[str, str]]:
    """``count`` (device_id, model) pairs, the models in turn."""
    return [
        (f"{DEVICE_PREFIX}{offset + n:08x}", MODELS[(offset + n) % len(MODELS)])
        for n in range(count)
    ]


def register_devices(dsn: str, devices: Sequence[tuple[str, str]]) -> None:
    """Insert the devices (idempotent); their model's default template gives their parameters."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO device (device_id, model, serial_number) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO NOTHING",
            [(device_id, model, f"BENCH-{device_id[-8:]}") for device_id, model in devices],
        )
    conn.close()


def load_components(dsn: str, ids: Sequence[str]) -> dict[str, tuple[ComponentSpec, ...]]:
    """Every device's components as ``device_parameters`` describes them."""
    components = load_device_components(lambda: psycopg2.connect(dsn), ids)
    missing = sorted(set(ids) - set(components))
    if missing:
        raise BenchError(f"{len(missing)} bench devices have no parameters, e.g. {missing[0]}")
    return components


@dataclass(frozen=True)
class Fleet:
    """Registered devices and their components (picklable: it goes to publisher processes)."""

    components: Mapping[str, tuple[ComponentSpec, ...]]

    @property
    def devices(self) -> list[str]:
        return sorted(self.components)

    def split(self, parts: int) -> list[Fleet]:
        """Disjoint sub-fleets (a device's timestamps only increase within one publisher)."""
        ids = self.devices
        return [
            Fleet({d: self.components[d] for d in ids[i::parts]})
            for i in range(parts)
            if ids[i::parts]
        ]


def messages(
    fleet: Fleet, seed: int, clock: Clock = utc_now, topic_prefix: str | None = None
) -> Iterator[Message]:
    """An endless stream: a random device's next message each time (deterministic per seed).

    ``topic_prefix`` replaces the leading ``cmnd`` (raw MQTT runs use a topic the bridge does
    not subscribe to).
    """
    rng = random.Random(seed)  # noqa: S311 (traffic shape, not cryptography)
    streams = [
        MessageStream(device, fleet.components[device], random.Random(f"{seed}/{device}"), clock)  # noqa: S311
        for device in fleet.devices
    ]
    if not streams:
        raise BenchError("the fleet has no devices")
    while True:
        message = rng.choice(streams).next_message()
        if topic_prefix is not None:
            message = Message(
                topic_prefix + message.topic.removeprefix("cmnd"),
                message.payload,
                message.timestamp,
                message.measurements,
            )
        yield message


def sample(fleet: Fleet, count: int, seed: int) -> list[Message]:
    """``count`` messages with timestamps of the present moment (distinct per device)."""
    return list(itertools.islice(messages(fleet, seed), count))


def raw_value(message: Message, received_at: str | None = None) -> dict[str, Any]:
    """The ``raw_iot_data`` value the bridge makes of this message, as a JSON object."""
    record = RawRecord.from_mqtt(message.topic, message.payload, 1, received_at)
    value: dict[str, Any] = json.loads(record.to_bytes())
    return value


def rows_per_message(batch: Sequence[Message]) -> float:
    """Measurements (rows) per message in a batch."""
    if not batch:
        return 0.0
    return sum(m.measurements for m in batch) / len(batch)
