"""Which dead letters a redrive takes, and the consumer group that remembers that selection."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from f2lib.contracts.devices import is_device_id
from f2lib.contracts.records import CONNECTOR_STAGE_PREFIX, DeadLetterValue
from f2lib.contracts.topics import device_key

GROUP_PREFIX = "f2pipe-redrive"
# Group ids stay readable in `make kafka-groups`; longer selections get a digest instead.
READABLE_GROUP_LIMIT = 160


def device_of(letter: DeadLetterValue) -> str | None:
    """The device a letter is about: its key, else its record's MQTT topic or device_id."""
    if letter.key and is_device_id(letter.key):
        return letter.key
    record = letter.record
    if isinstance(record, dict):
        topic = record.get("topic")
        if isinstance(topic, str) and (found := device_key(topic)):
            return found
        device = record.get("device_id")
        if isinstance(device, str) and is_device_id(device):
            return device
    return None


@dataclass(frozen=True, slots=True)
class Selection:
    """Stage, reason, device and time window (Kafka timestamps of the letters, ms), each
    optional. ``stage`` ``connector`` takes the connector's letters of every function."""

    stage: str | None = None
    reason: str | None = None
    device: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, letter: DeadLetterValue, timestamp_ms: int) -> bool:
        if self.stage is not None and not _stage_matches(self.stage, letter.stage):
            return False
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.device is not None and device_of(letter) != self.device:
            return False
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms <= self.until_ms

    def group_id(self, prefix: str = GROUP_PREFIX) -> str:
        """The consumer group of this selection: the same selection resumes where it stopped."""
        parts = [f"{name}={value}" for name, value in asdict(self).items() if value is not None]
        if not parts:
            return prefix
        readable = ".".join([prefix, *parts])
        if len(readable) <= READABLE_GROUP_LIMIT:
            return readable
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()
        return f"{prefix}.{digest[:16]}"

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, value: Any) -> Selection | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                stage=_text(value.get("stage")),
                reason=_text(value.get("reason")),
                device=_text(value.get("device")),
                since_ms=_int(value.get("since_ms")),
                until_ms=_int(value.get("until_ms")),
            )
        except ValueError:
            return None

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_json().items()) or "every dead letter"


def _stage_matches(wanted: str, stage: str) -> bool:
    if wanted == stage:
        return True
    return wanted == CONNECTOR_STAGE_PREFIX.rstrip(":") and stage.startswith(CONNECTOR_STAGE_PREFIX)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{value!r} is not text")


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{value!r} is not an integer")
