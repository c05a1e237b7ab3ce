"""The command-reply function (served by the template's index.py) against the real PostgreSQL and
Kafka: late replies land in their audit row once; the others are dead-lettered with a reason."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from f2lib.contracts.records import RawRecord
from infra.local.launch.kafka import KafkaServer
from tests.fixtures.provision import FunctionEndpoint, serve_function
from tests.kafka_support import read_topic_to_end

pytestmark = pytest.mark.integration

DEVICE, OTHER = "f2-e4fd45f654be", "f2-0a1b2c3d4e5f"  # the demo devices
DEAD = f"t-reply-dead-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def reply_fn(runtime_root: Path, devices_db: str, kafka: KafkaServer) -> Iterator[FunctionEndpoint]:
    kafka.create_topics([DEAD], partitions=1)
    endpoint = serve_function(
        "command-reply",
        runtime_root / "command-reply-fn",
        secrets={"devices-dsn": devices_db},
        env={"KAFKA_BOOTSTRAP": kafka.bootstrap, "DEAD_LETTER_TOPIC": DEAD},
    )
    yield endpoint
    endpoint.process.stop()


def sent_command(dsn: str, device_id: str = DEVICE) -> str:
    """A command row as the command function leaves it when no reply came in time."""
    command_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO device_command (command_id, device_id, connector, connector_mode,"
            " component, action, params, requested_by, requested_at, expires_at, status,"
            " published_at) VALUES (%s, %s, 'J1', 'access-control-mode', 'strike-1', 'unlock',"
            " '{\"duration_s\": 5}', 'operator', %s, %s, 'sent', %s)",
            (command_id, device_id, now, now + dt.timedelta(seconds=30), now),
        )
    return command_id


def row(dsn: str, command_id: str) -> dict[str, Any]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM device_command WHERE command_id = %s", (command_id,))
        names = [c.name for c in cur.description]
        found = cur.fetchone()
        assert found is not None
        return dict(zip(names, found, strict=True))


def record(
    command_id: str, result: str = "ok", device_id: str = DEVICE, offset: int = 0, **payload: Any
) -> dict[str, Any]:
    body = {"command_id": command_id, "result": result, "detail": f"late {result}", **payload}
    raw = RawRecord.from_mqtt(f"ctrl-resp/{device_id}", json.dumps(body).encode(), 1)
    return {
        "topic": "iot_command_replies",
        "partition": 0,
        "offset": offset,
        "key": device_id,
        "value": raw.model_dump(),
    }


def post(fn: FunctionEndpoint, batch: list[dict[str, Any]]) -> requests.Response:
    return requests.post(fn.url, json=batch, timeout=30)


def test_a_late_reply_is_recorded_once_even_when_redelivered(
    reply_fn: FunctionEndpoint, devices_db: str
) -> None:
    command_id = sent_command(devices_db)
    batch = [record(command_id, offset=1)]
    answer = post(reply_fn, batch)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"records": 1, "recorded": 1, "duplicates": 0, "dead_letters": 0}
    first = row(devices_db, command_id)
    assert first["status"] == "ok" and first["answered_via"] == "command_reply"
    assert first["result"] == {"result": "ok", "detail": "late ok"}

    again = post(reply_fn, [*batch, record(command_id, "rejected", offset=2)])
    assert again.status_code == 200
    assert again.json() == {"records": 2, "recorded": 0, "duplicates": 2, "dead_letters": 0}
    assert row(devices_db, command_id) == first


def test_an_unknown_command_or_a_reply_from_another_device_is_dead_lettered_with_a_reason(
    reply_fn: FunctionEndpoint, devices_db: str, kafka: KafkaServer
) -> None:
    theirs = sent_command(devices_db, OTHER)
    unknown = str(uuid.uuid4())
    started = datetime.now(UTC).isoformat(timespec="microseconds")
    batch = [
        record(unknown, offset=10),
        record(theirs, device_id=DEVICE, offset=11),
        {**record(theirs, offset=12), "value": "not a record"},
    ]
    answer = post(reply_fn, batch)
    assert answer.status_code == 200, answer.text
    assert answer.json()["dead_letters"] == 3 and answer.json()["recorded"] == 0
    assert row(devices_db, theirs)["status"] == "sent"
    # The 200 came once the dead letters were in Kafka: read the topic to its end, and keep the
    # letters of this test's batch (written since it started, from its source offsets).
    letters = [
        letter
        for letter in (json.loads(r.value) for r in read_topic_to_end(kafka.bootstrap, DEAD))
        if letter["failed_at"] >= started and letter["source"]["offset"] in (10, 11, 12)
    ]
    assert len(letters) == 3
    by_offset = {x["source"]["offset"]: x for x in letters}
    assert by_offset[10]["reason"] == "unknown_command" and unknown in by_offset[10]["error"]
    assert by_offset[11]["reason"] == "wrong_device" and by_offset[11]["key"] == DEVICE
    assert by_offset[12]["reason"] == "bad_reply"
    assert {x["stage"] for x in letters} == {"command_reply"}


def test_a_single_record_as_openfaas_connector_sends_it_is_recorded(
    reply_fn: FunctionEndpoint, devices_db: str
) -> None:
    command_id = sent_command(devices_db)
    one = record(command_id, "expired")
    answer = requests.post(
        reply_fn.url,
        data=json.dumps(one["value"]),
        headers={
            "Content-Type": "application/json",
            "X-Topic": "iot_command_replies",
            "X-Kafka-Key": DEVICE,
        },
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["recorded"] == 1, answer.text
    assert row(devices_db, command_id)["status"] == "expired"


def test_a_malformed_batch_is_refused_whole(reply_fn: FunctionEndpoint) -> None:
    answer = requests.post(reply_fn.url, data=b"[1, 2]", timeout=30)
    assert answer.status_code == 400
