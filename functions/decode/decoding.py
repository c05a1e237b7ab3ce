"""The decode core: raw F2 records plus device parameters in, measurements and dead letters out.

Pure: no I/O. ``decode_batch(records, params)`` never raises for a bad record; each one becomes
a dead letter with the stage, the reason of its RecordError and the error text. A record's
redrive/reprocess marks (``f2lib.contracts.marks``) go with what it becomes: each of its
measurements, or its dead letter.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.marks import Marks
from f2lib.contracts.records import DeadLetter, RawRecord
from f2lib.contracts.topics import device_key, parse_topic
from f2lib.errors import (
    JSON_DECODE_ERRORS,
    DecodingError,
    PayloadError,
    RecordError,
    TimestampError,
)
from f2lib.models import Measurement, parse_timestamp, validation_summary
from f2lib.trusted import trusted

from .params import DataPointParams, DeviceParameters

logger = logging.getLogger(__name__)

TIMESTAMP_FIELD = "timestamp"
DEFAULT_HEX_WIDTH_BITS = 16

# (component_id, value, value_text)
Decoded = tuple[str, float | None, str | None]


@dataclass
class DecodeResult:
    """Measurements in record order, and the dead letters of the records that failed.

    ``marks[i]`` are the marks of the record ``measurements[i]`` was decoded from.
    """

    measurements: list[Measurement] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    marks: list[Marks] = field(default_factory=list)

    def add(self, measurements: list[Measurement], marks: Marks) -> None:
        self.measurements.extend(measurements)
        self.marks.extend(marks for _ in measurements)

    def marked(self) -> Iterable[tuple[Measurement, Marks]]:
        """Each measurement with the marks it carries."""
        return zip(self.measurements, self.marks, strict=True)


def raw_record(record: ConnectorRecord) -> RawRecord:
    """The RawRecord carried by a connector record; PayloadError when it is not one."""
    value = record.value
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except JSON_DECODE_ERRORS as exc:
            raise PayloadError("record value is not JSON") from exc
    if not isinstance(value, dict):
        raise PayloadError("record value is not a raw record object")
    if _raw_record_shape(value):
        return trusted(RawRecord, value)
    try:
        return RawRecord.model_validate(value)
    except ValidationError as exc:
        raise PayloadError(f"record value is not a raw record: {validation_summary(exc)}") from exc


_RAW_FIELDS = frozenset({"topic", "payload", "payload_encoding", "received_at", "qos"})


def _raw_record_shape(value: dict[str, Any]) -> bool:
    """True when ``value`` is a RawRecord exactly as the bridge writes it: validating it would
    pass and change nothing."""
    return (
        value.keys() == _RAW_FIELDS
        and type(value["topic"]) is str
        and type(value["payload"]) is str
        and value["payload_encoding"] in ("utf-8", "base64")
        and type(value["received_at"]) is str
        and type(value["qos"]) is int
    )


def devices_of(records: Iterable[ConnectorRecord], *, marked_only: bool = False) -> set[str]:
    """The device ids named by the records' topics (records without one are skipped);
    with ``marked_only``, those of redriven or reprocessed records only."""
    devices = set()
    for record in records:
        if marked_only and not record.marks:
            continue
        value = record.value
        topic = value.get("topic") if isinstance(value, dict) else None
        device = device_key(topic) if isinstance(topic, str) else None
        if device is not None:
            devices.add(device)
    return devices


def decode_batch(records: Sequence[ConnectorRecord], params: DeviceParameters) -> DecodeResult:
    """Decode every record; bad ones become dead letters, the others keep their order."""
    result = DecodeResult()
    for record in records:
        try:
            result.add(decode_record(record, params), record.marks)
        except RecordError as exc:
            key = record.key or _key_of(record)
            logger.info(
                "dead-lettering record topic=%s partition=%s offset=%s key=%s: %s (%s)",
                record.topic,
                record.partition,
                record.offset,
                key,
                exc.reason,
                exc,
            )
            result.dead_letters.append(DeadLetter.from_error(record, exc, key))
    return result


def decode_record(record: ConnectorRecord, params: DeviceParameters) -> list[Measurement]:
    """The measurements of one raw record; raises a RecordError subclass when it is bad."""
    raw = raw_record(record)
    parts = parse_topic(raw.topic)
    point = params.find(
        parts.device_id,
        parts.connector_mode,
        parts.connector,
        parts.component_type,
        parts.component_id,
    )
    payload = _payload(raw)
    time = _timestamp(payload)
    decoded = decode_values(payload, point, parts.component_id or "")
    try:
        return [
            Measurement.checked(
                time=time,
                device_id=parts.device_id,
                connector_mode=parts.connector_mode,
                connector=parts.connector,
                component_type=parts.component_type,
                component_id=component_id,
                value=value,
                value_text=text,
                unit=point.units,
                topic=raw.topic,
            )
            for component_id, value, text in decoded
        ]
    except ValidationError as exc:
        raise DecodingError(
            f"decoded value is not a valid measurement: {validation_summary(exc)}"
        ) from exc


def decode_values(
    payload: dict[str, Any], point: DataPointParams, component_id: str
) -> list[Decoded]:
    """Apply the data point's encoding to the payload."""
    encoding = point.encoding_type
    if encoding == "boolean":
        return [(component_id, _boolean(_field(payload, "status"), "status"), None)]
    if encoding == "boolean_map":
        members = {k: v for k, v in payload.items() if k != TIMESTAMP_FIELD}
        if not members:
            raise PayloadError("boolean_map payload has no members")
        return [(name, _boolean(state, name), None) for name, state in members.items()]
    if encoding == "hex_to_float":
        number = hex_to_number(_field(payload, "data"), point.value_width_bits, point.value_signed)
        return [(component_id, scale(number, point.scaling_factor), None)]
    if encoding == "raw_string":
        data = _field(payload, "data")
        if not isinstance(data, str):
            raise DecodingError(f"reader data must be a string, got {type(data).__name__}")
        return [(component_id, None, reader_text(data))]
    raise DecodingError(f"unknown encoding_type {encoding!r} in the device parameters")


def scale(number: int, factor: float) -> float:
    """``number`` x ``factor`` without binary noise: 10194 x 0.1 is 1019.4, not 1019.4000000000001.

    An integer times a factor with d decimal places has at most d decimal places exactly, so
    rounding to d places only removes the float error of the multiplication.
    """
    try:
        product = number * factor
    except OverflowError as exc:  # an integer of hundreds of digits is no float
        raise DecodingError(
            f"a {number.bit_length()}-bit number x {factor} is beyond a float's range"
        ) from exc
    if not math.isfinite(product):
        raise DecodingError(f"{number} x {factor} is not a finite number")
    exponent = Decimal(repr(factor)).as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return round(product, places) if places <= 15 else product


def hex_to_number(data: Any, width_bits: int | None, signed: bool) -> int:
    """An integer from hex text (optional 0x), two's complement at ``width_bits`` when signed."""
    if not isinstance(data, str):
        raise DecodingError(f"hex data must be a string, got {type(data).__name__}")
    digits = data.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise DecodingError(f"{data!r} is not hexadecimal")
    number = int(digits, 16)
    width = width_bits or max(len(digits) * 4, 1)
    if number >= 1 << width:
        raise DecodingError(f"{data!r} does not fit in {width} bits")
    if signed and number >= 1 << (width - 1):
        number -= 1 << width
    return number


def reader_text(data: str) -> str:
    """The text a reader sent: a Python bytes literal is unwrapped, other text kept as is."""
    if not _BYTES_PREFIX.match(data):
        return data
    content = parse_bytes_literal(data)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodingError("reader data is not UTF-8 text") from exc


_BYTES_PREFIX = re.compile(r"^(?:[bB][rR]?|[rR][bB])['\"]")
_SIMPLE_ESCAPES = {
    "\\": 0x5C,
    "'": 0x27,
    '"': 0x22,
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
}
_HEX = "0123456789abcdefABCDEF"


def parse_bytes_literal(text: str) -> bytes:
    """The bytes of a Python bytes literal such as ``b'\\"Hi\\"\\x00'``, parsed, never evaluated.

    Accepts the prefixes b, rb, br (any case) and one pair of ' or " quotes, with Python's
    escapes (\\\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v \\xhh \\ooo, backslash-newline); an
    unknown escape keeps its backslash, as Python does. Raises DecodingError otherwise.
    """
    match = _BYTES_PREFIX.match(text)
    if match is None:
        raise DecodingError("not a bytes literal: expected b'...' or b\"...\"")
    prefix = match.group(0)[:-1]
    quote = match.group(0)[-1]
    raw = "r" in prefix.lower()
    if len(text) < len(prefix) + 2 or text[-1] != quote:
        raise DecodingError("bytes literal is not closed by its quote")
    body = text[len(prefix) + 1 : -1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if ord(char) > 0x7F:
            raise DecodingError("bytes literal holds a non-ASCII character")
        if char == quote:
            raise DecodingError("bytes literal has an unescaped quote inside")
        if char != "\\":
            out.append(ord(char))
            i += 1
            continue
        if i + 1 >= len(body):
            raise DecodingError("bytes literal ends with a lone backslash")
        nxt = body[i + 1]
        if raw:
            # In a raw literal a backslash stays, and only protects the next character.
            if ord(nxt) > 0x7F:
                raise DecodingError("bytes literal holds a non-ASCII character")
            out.extend(("\\" + nxt).encode("ascii"))
            i += 2
            continue
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt == "\n":
            i += 2
        elif nxt == "x":
            pair = body[i + 2 : i + 4]
            if len(pair) != 2 or not all(c in _HEX for c in pair):
                raise DecodingError("bytes literal has a truncated \\xhh escape")
            out.append(int(pair, 16))
            i += 4
        elif nxt in "01234567":
            end = i + 2
            while end < len(body) and end < i + 4 and body[end] in "01234567":
                end += 1
            code = int(body[i + 1 : end], 8)
            if code > 0xFF:
                raise DecodingError("bytes literal has an octal escape above \\377")
            out.append(code)
            i = end
        else:
            if ord(nxt) > 0x7F:
                raise DecodingError("bytes literal holds a non-ASCII character")
            out.extend(b"\\" + nxt.encode("ascii"))
            i += 2
    return bytes(out)


def _payload(raw: RawRecord) -> dict[str, Any]:
    try:
        text = raw.payload if raw.payload_encoding == "utf-8" else raw.payload_bytes()
    except ValueError as exc:  # binascii.Error: a record not as the bridge writes it
        raise PayloadError(f"payload is not valid base64: {exc}") from exc
    try:
        # orjson, strict JSON: NaN and Infinity are refused here (they are not JSON; json.loads
        # took them and the value then failed as not finite)
        payload = orjson.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PayloadError(f"payload is a JSON {type(payload).__name__}, not an object")
    return payload


def _timestamp(payload: dict[str, Any]) -> Any:
    if TIMESTAMP_FIELD not in payload:
        raise TimestampError("payload has no timestamp")
    try:
        return parse_timestamp(payload[TIMESTAMP_FIELD])
    except ValueError as exc:
        raise TimestampError(str(exc)) from exc


def _field(payload: dict[str, Any], name: str) -> Any:
    if name not in payload:
        raise PayloadError(f"payload has no {name!r}")
    return payload[name]


def _boolean(value: Any, name: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int) and value in (0, 1):
        return float(value)
    raise DecodingError(f"{name!r} must be true or false, got {value!r}")


def _key_of(record: ConnectorRecord) -> str | None:
    value = record.value
    topic = value.get("topic") if isinstance(value, dict) else None
    return device_key(topic) if isinstance(topic, str) else None
