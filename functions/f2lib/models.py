"""The decoded measurement shared by decode (what it produces) and sink (what it stores)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from f2lib.contracts.topics import CONNECTOR_MODES, CONNECTORS
from f2lib.trusted import trusted

# "2023-05-26 18:34:04.928538" (the devices' format), optionally zoned, or ISO 8601 with "T".
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
# A number, optionally followed by a unit: "27.93 °C", "-4", "1e3 Pa", "55 %".
_NUMBER_WITH_UNIT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S.*)?$")


def parse_timestamp(value: Any) -> datetime:
    """A timezone-aware UTC datetime from the devices' format, ISO 8601 or a datetime.

    Naive values are UTC. Raises ValueError for anything else (numbers included: an epoch
    without a unit is a guess).
    """
    if isinstance(value, datetime):
        if value.tzinfo is UTC:
            return value
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if not _TIMESTAMP.match(text):
            raise ValueError(f"timestamp {value!r} is not 'YYYY-MM-DD HH:MM:SS[.ffffff][zone]'")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"timestamp {value!r} is not a valid date and time") from exc
    else:
        raise ValueError(f"timestamp must be a string, got {type(value).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31 23:59 at -01:00 is after the last UTC datetime
        raise ValueError(f"timestamp {value!r} is out of the representable range") from exc


def parse_number(value: Any) -> float | None:
    """A finite float from a number, a bool (1.0/0.0) or a numeric string with a unit."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError as exc:  # JSON integers have no bound; floats do
            raise ValueError("value is beyond a float's range") from exc
    elif isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a number (optionally followed by a unit)")
        number = float(match.group(1))
    else:
        raise ValueError(f"value must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError("value must be finite")
    return number


def validation_summary(exc: ValidationError, limit: int = 3) -> str:
    """A short, one-line account of a pydantic validation error (no input values)."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "value"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _no_nul(text: str | None, field: str) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError(f"{field} contains a NUL character, which PostgreSQL text cannot hold")
    return text


class Measurement(BaseModel):
    """One decoded value of one component of one device at one time.

    The natural key is (device_id, topic, time, component_id); ``component_id`` is never
    null: the topic's ``-<N>``, the boolean_map member name, or "" when there is neither.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    time: datetime = Field(validation_alias=AliasChoices("time", "timestamp"))
    device_id: str = Field(pattern=r"^f2-[0-9a-f]{12}$")
    connector_mode: str
    connector: str
    component_type: str = Field(min_length=1, max_length=64)
    component_id: str = Field(default="", max_length=128)
    value: float | None = None
    value_text: str | None = Field(default=None, max_length=65_536)
    unit: str | None = Field(default=None, max_length=64)
    topic: str = Field(min_length=1, max_length=512)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        return parse_timestamp(value)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> float | None:
        return parse_number(value)

    @field_validator("component_id", mode="before")
    @classmethod
    def _component_id(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("connector_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in CONNECTOR_MODES:
            raise ValueError(f"connector_mode must be one of {', '.join(CONNECTOR_MODES)}")
        return value

    @field_validator("connector")
    @classmethod
    def _connector(cls, value: str) -> str:
        if value not in CONNECTORS:
            raise ValueError(f"connector must be one of {', '.join(CONNECTORS)}")
        return value

    @model_validator(mode="after")
    def _has_a_value(self) -> Measurement:
        if self.value is None and self.value_text is None:
            raise ValueError("a measurement needs value or value_text")
        for field in ("value_text", "unit", "topic", "component_id", "component_type"):
            _no_nul(getattr(self, field), field)
        return self

    @property
    def key(self) -> str:
        """The Kafka key of the decoded record: the device id ``f2-<mac>``."""
        return self.device_id

    def to_json_bytes(self) -> bytes:
        """The JSON of the model (byte for byte what ``model_dump_json`` writes), with orjson."""
        moment = self.time.isoformat()
        if moment.endswith("+00:00"):
            moment = moment[:-6] + "Z"
        return orjson.dumps(
            {
                "time": moment,
                "device_id": self.device_id,
                "connector_mode": self.connector_mode,
                "connector": self.connector,
                "component_type": self.component_type,
                "component_id": self.component_id,
                "value": self.value,
                "value_text": self.value_text,
                "unit": self.unit,
                "topic": self.topic,
            }
        )

    @classmethod
    def checked(cls, **fields: Any) -> Measurement:
        """``Measurement(**fields)``, faster: when every field already is what validation would
        make of it, the model is built without running the validators again; anything else
        (to be converted, or invalid) goes through full validation and its errors."""
        if _already_valid(fields):
            return cls._valid(fields)
        return cls(**fields)

    @classmethod
    def _valid(cls, fields: dict[str, Any]) -> Measurement:
        return trusted(cls, fields)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Measurement:
        """``Measurement.model_validate(value)`` for a decoded record's JSON object (the sink's
        input), with the same fast path as ``checked``."""
        if value.keys() == _FIELD_SET and type(value["time"]) is str:
            try:
                moment = parse_timestamp(value["time"])
            except ValueError:
                return cls.model_validate(value)
            fields = {**value, "time": moment}
            if _already_valid(fields):
                return cls._valid(fields)
        return cls.model_validate(value)


_DEVICE_ID = re.compile(r"f2-[0-9a-f]{12}")
_TEXT_LIMITS = (("component_type", 1, 64), ("component_id", 0, 128), ("topic", 1, 512))


def _already_valid(fields: Mapping[str, Any]) -> bool:
    """True when validating ``fields`` as a Measurement would pass and change none of them."""
    if fields.keys() != _FIELD_SET:
        return False
    moment, value = fields["time"], fields["value"]
    if type(moment) is not datetime or moment.tzinfo is not UTC:
        return False
    if value is not None and (type(value) is not float or not math.isfinite(value)):
        return False
    device = fields["device_id"]
    if type(device) is not str or _DEVICE_ID.fullmatch(device) is None:
        return False
    if fields["connector_mode"] not in CONNECTOR_MODES or fields["connector"] not in CONNECTORS:
        return False
    for name, low, high in _TEXT_LIMITS:
        text = fields[name]
        if type(text) is not str or not low <= len(text) <= high or "\x00" in text:
            return False
    for name, high in (("value_text", 65_536), ("unit", 64)):
        text = fields[name]
        if text is not None and (type(text) is not str or len(text) > high or "\x00" in text):
            return False
    return value is not None or fields["value_text"] is not None


MEASUREMENT_COLUMNS = (
    "time",
    "device_id",
    "connector_mode",
    "connector",
    "component_type",
    "component_id",
    "value",
    "value_text",
    "unit",
    "topic",
)
_FIELD_SET = frozenset(MEASUREMENT_COLUMNS)
