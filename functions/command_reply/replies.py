"""Reading a batch of ``iot_command_replies`` records: each a device's reply, or a dead letter.

A record's value is a RawRecord (as the bridge writes it for ``ctrl-resp/<device>``), its key
the device id. The reply's device is the topic's; a record whose key names another device, whose
topic is not a reply topic, or whose payload is not ``{"command_id", "result", "detail"}`` is
dead-lettered (stage ``command_reply``); so is, once the audit trail was asked, a reply for an
unknown command or from another device than the command's target.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import ValidationError

from f2lib.contracts.commands import CommandReply
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.contracts.records import DeadLetter, RawRecord
from f2lib.contracts.topics import parse_reply_topic
from f2lib.errors import RecordError, ReplyError, UnknownCommandError, WrongDeviceError
from f2lib.models import parse_timestamp

STAGE = "command_reply"


@dataclass(frozen=True, slots=True)
class DeviceReply:
    """One reply to record, and the record it came in."""

    record: ConnectorRecord
    device_id: str
    reply: CommandReply
    answered_at: dt.datetime


@dataclass
class ReplyBatch:
    """The replies of a batch and the records that are not replies at all."""

    replies: list[DeviceReply] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def read_reply(record: ConnectorRecord) -> DeviceReply:
    """The reply a record carries; RecordError (dead-lettered) when it carries none."""
    if not isinstance(record.value, dict):
        raise ReplyError("record value is not a raw MQTT record", key=record.key)
    try:
        raw = RawRecord.model_validate(record.value)
    except ValidationError as exc:
        raise ReplyError(
            f"record value is not a raw MQTT record: {exc.error_count()} problem(s)"
        ) from exc
    device_id = parse_reply_topic(raw.topic, stage=STAGE)
    if record.key is not None and record.key != device_id:
        raise ReplyError(f"record key {record.key!r} is not the topic's device {device_id}")
    try:
        payload = raw.payload_bytes()
    except ValueError as exc:
        raise ReplyError("payload is not valid base64") from exc
    reply = CommandReply.parse(payload, topic=raw.topic)
    try:
        answered_at = parse_timestamp(raw.received_at)
    except ValueError as exc:
        raise ReplyError(f"received_at is not a time: {exc}") from exc
    return DeviceReply(record, device_id, reply, answered_at)


def read_batch(records: list[ConnectorRecord]) -> ReplyBatch:
    batch = ReplyBatch()
    for record in records:
        try:
            batch.replies.append(read_reply(record))
        except RecordError as exc:
            batch.dead_letters.append(DeadLetter.from_error(record, exc))
    return batch


def refusal(reply: DeviceReply, outcome: str) -> DeadLetter | None:
    """The dead letter of a reply the audit trail refused (None when it was taken)."""
    error: RecordError
    if outcome == "unknown_command":
        error = UnknownCommandError(
            f"no command {reply.reply.command_id} in the audit trail", topic=reply.device_id
        )
    elif outcome == "wrong_device":
        error = WrongDeviceError(
            f"command {reply.reply.command_id} was not sent to {reply.device_id}",
            topic=reply.device_id,
        )
    else:
        return None
    return DeadLetter.from_error(reply.record, error, key=reply.device_id)
