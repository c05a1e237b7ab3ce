"""The time window of a redrive or reprocess: SINCE and UNTIL as a time or a duration ago."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from f2lib.errors import ConfigError

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, now: datetime) -> datetime:
    """A UTC time from ISO 8601 (``2025-06-01``, ``2025-06-01T12:00``, ``... 12:00:00+02:00``;
    naive is UTC) or a duration before ``now`` (``90s``, ``15m``, ``6h``, ``2d``, ``1w``)."""
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{text!r} is neither an ISO 8601 time nor a duration like 6h") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """From ``since`` to ``until`` (both included, each optional), in Kafka timestamps (ms)."""

    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None, now: datetime) -> TimeWindow:
        window = cls(
            to_ms(parse_moment(since, now)) if since else None,
            to_ms(parse_moment(until, now)) if until else None,
        )
        first, last = window.since_ms, window.until_ms
        if first is not None and last is not None and first > last:
            raise ConfigError("SINCE is after UNTIL: the window is empty")
        return window

    def contains(self, timestamp_ms: int) -> bool:
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms <= self.until_ms

    def describe(self) -> str:
        if self.since_ms is None and self.until_ms is None:
            return "any time"
        since = iso_ms(self.since_ms) if self.since_ms is not None else "the beginning"
        until = iso_ms(self.until_ms) if self.until_ms is not None else "now"
        return f"{since} .. {until}"


def iso_ms(ms: int) -> str:
    """A Kafka timestamp as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
