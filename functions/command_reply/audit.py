"""Recording late replies in the ``device_command`` audit trail, one transaction per batch.

Each reply goes through ``device_command_record_reply`` (sql/devices/030_device_commands.sql),
the same function the command function calls for the replies it waited for: the first reply of
the command's own device is recorded, any later copy is a ``duplicate`` and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2

from f2lib.errors import StoreError

from .replies import DeviceReply

logger = logging.getLogger(__name__)

VIA = "command_reply"

Connect = Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the audit trail made of one reply, and when its command was asked for."""

    outcome: str  # recorded, duplicate, unknown_command, wrong_device
    requested_at: dt.datetime | None


class ReplyAudit:
    """The audit trail as the reply function writes it."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect

    @classmethod
    def from_dsn(cls, dsn: str, *, connect_timeout: int = 5) -> ReplyAudit:
        def connect() -> Any:
            return psycopg2.connect(
                dsn, connect_timeout=connect_timeout, application_name="f2pipe-command-reply"
            )

        return cls(connect)

    def record(self, replies: Sequence[DeviceReply]) -> list[Recorded]:
        """Record every reply in one committed transaction (StoreError when it is not)."""
        if not replies:
            return []
        try:
            conn = self._connect()
        except psycopg2.Error as exc:
            raise StoreError(f"device database unavailable: {exc.__class__.__name__}") from exc
        try:
            with conn, conn.cursor() as cur:
                found: list[Recorded] = []
                for item in replies:
                    cur.execute(
                        "SELECT device_command_record_reply(%s, %s, %s, %s, %s, %s),"
                        " (SELECT requested_at FROM device_command WHERE command_id = %s)",
                        (
                            item.reply.command_id,
                            item.device_id,
                            item.reply.result,
                            item.reply.detail,
                            item.answered_at,
                            VIA,
                            item.reply.command_id,
                        ),
                    )
                    row = cur.fetchone()
                    found.append(Recorded(str(row[0]), row[1]) if row else Recorded("", None))
        except psycopg2.Error as exc:
            raise StoreError(f"audit trail not updated: {exc.__class__.__name__}") from exc
        finally:
            conn.close()
        return found
