"""Redrive and reprocess on the real local stack: MQTT -> bridge -> Kafka -> decode -> sink, then
``make redrive`` / ``make reprocess`` (and ``python -m`` for the kill), all real processes.

The commands run as an operator runs them, against the stack of the ``local_stack`` fixture
(``F2_STATE_DIR`` points ``make`` at it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from f2lib.contracts.marks import Marks, Position
from f2lib.contracts.records import (
    DEAD_LETTER_TOPIC,
    RAW_TOPIC,
    REPLAYABLE_TOPICS,
    topic_configs,
)
from infra.deploy.docker.create_topics import config_changes
from infra.local.stack import DEVICES_DB, MONITOR_USER, TIMESERIES_DB, LocalStack
from tests.device_templates import add_device, copy_default_template, set_scaling_factor
from tests.kafka_support import read_topic_to_end
from tests.mqtt_support import Publisher
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 7, 1, 8, 0, 0, tzinfo=UTC)
_lock = threading.Lock()
_counter = [0]


def new_mac() -> str:
    with _lock:
        _counter[0] += 1
        return f"02aa{uuid.uuid4().hex[:4]}{_counter[0]:04x}"


def stamp(i: int) -> str:
    return (T0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.fixture
def publisher(local_stack: LocalStack) -> Iterator[Publisher]:
    pub = Publisher(
        "127.0.0.1",
        local_stack.ports.mqtt,
        MONITOR_USER,
        local_stack.secret("mqtt-monitor-password"),
    )
    yield pub
    pub.close()


def publish_all(publisher: Publisher, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for topic, payload in messages:
        publisher.client.publish(topic, json.dumps(payload), qos=1)


def count_rows(stack: LocalStack, device: str) -> int:
    with psycopg2.connect(stack.dsn(TIMESERIES_DB)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM iot_measurements WHERE device_id = %s", (device,))
        row = cur.fetchone()
        return int(row[0]) if row else 0


def stored(stack: LocalStack, device: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(stack.dsn(TIMESERIES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, component_id, value, unit, ingested_at FROM iot_measurements"
            " WHERE device_id = %s ORDER BY time",
            (device,),
        )
        return list(cur.fetchall())


def letters_of(stack: LocalStack, device: str) -> list[tuple[Position, dict[str, Any]]]:
    records = read_topic_to_end(f"127.0.0.1:{stack.ports.kafka}", DEAD_LETTER_TOPIC)
    return [
        (Position(r.topic, r.partition, r.offset), json.loads(r.value))
        for r in records
        if r.key == device.encode()
    ]


def redriven_to_raw(stack: LocalStack, letters: list[Position]) -> Counter[Position]:
    """How many records of raw_iot_data name each of ``letters`` in their f2-redrive header."""
    wanted = set(letters)
    found: Counter[Position] = Counter()
    for record in read_topic_to_end(f"127.0.0.1:{stack.ports.kafka}", RAW_TOPIC):
        redrive = Marks.from_kafka(record.headers).redrive
        if redrive is not None and redrive.dead_letter in wanted:
            found[redrive.dead_letter] += 1
    return found


def make(stack: LocalStack, target: str, *variables: str) -> dict[str, Any]:
    """``make -s <target> VAR=... <TARGET>_ARGS=--json`` on this stack; the summary."""
    args_var = f"{target.upper()}_ARGS=--json"
    result = subprocess.run(
        ["make", "-s", target, *variables, args_var],
        cwd=ROOT,
        env={**os.environ, "F2_STATE_DIR": str(stack.state_dir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def provision(stack: LocalStack, mac: str, model: str) -> None:
    response = requests.post(
        f"http://127.0.0.1:{stack.ports.gateway}/function/provision",
        json={"mac": mac, "model": model, "serial_number": f"RD-{mac}"},
        headers={"Authorization": f"Bearer {stack.secret('provision-token')}"},
        timeout=60,
    )
    assert response.status_code == 201, response.text


def strike_messages(device: str, count: int, component: str = "strike-1") -> list[Any]:
    topic = f"cmnd/{device}/access-control-mode/J1/{component}"
    return [(topic, {"timestamp": stamp(i), "status": i % 2 == 0}) for i in range(count)]


def test_the_replayable_topics_keep_their_records_seven_days(local_stack: LocalStack) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{local_stack.ports.kafka}")
    try:
        assert config_changes(admin, topic_configs(7)) == {}
        assert set(topic_configs()) == set(REPLAYABLE_TOPICS)
    finally:
        admin.close()


def test_an_unprovisioned_devices_messages_are_stored_after_provisioning_and_redrive_once(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    mac = new_mac()
    device = f"f2-{mac}"
    publish_all(publisher, strike_messages(device, 20))
    letters = wait_for(
        lambda: (found := letters_of(local_stack, device)) and len(found) >= 20 and found,
        90, 0.5, "20 dead letters",
    )  # fmt: skip
    assert len(letters) == 20
    assert {(v["stage"], v["reason"]) for _, v in letters} == {("decode", "unknown_device")}
    assert count_rows(local_stack, device) == 0
    positions = [p for p, _ in letters]

    dry = make(local_stack, "redrive", "REASON=unknown_device", f"DEVICE={device}", "DRY_RUN=1")
    assert dry["totals"] == {"would_send": 20} and dry["sent"] == 0
    assert redriven_to_raw(local_stack, positions) == Counter()

    provision(local_stack, mac, "F2-212")
    first = make(local_stack, "redrive", "REASON=unknown_device", f"DEVICE={device}")
    assert first["sent"] == 20 and first["sent_to"] == {RAW_TOPIC: 20}
    assert first["by_stage_and_reason"] == [
        {"stage": "decode", "reason": "unknown_device", "sent": 20}
    ]
    wait_for(lambda: count_rows(local_stack, device) == 20, 90, 0.5, "20 rows")

    again = make(local_stack, "redrive", "REASON=unknown_device", f"DEVICE={device}")
    assert (again["read"], again["sent"]) == (0, 0)
    assert redriven_to_raw(local_stack, positions) == Counter(dict.fromkeys(positions, 1))
    assert len(letters_of(local_stack, device)) == 20  # none failed again
    assert count_rows(local_stack, device) == 20
    metrics = (local_stack.state_dir / "metrics" / "redrive.prom").read_text()
    assert "f2_replay_last_run_success" in metrics and "f2_replay_records_total" in metrics


def test_a_fixed_scaling_factor_is_reprocessed_into_all_200_rows_and_no_other_device(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    devices_dsn = local_stack.dsn(DEVICES_DB)
    template = copy_default_template(devices_dsn, "F2-401")
    set_scaling_factor(devices_dsn, template, "J1", "sensor", "1", 1.0)  # wrong: 0.1 is right
    fixed, other = f"f2-{new_mac()}", f"f2-{new_mac()}"
    add_device(devices_dsn, fixed, "F2-401", template)
    add_device(devices_dsn, other, "F2-401", template)
    started = datetime.now(UTC) - timedelta(seconds=5)

    def sensor(device: str, count: int) -> list[Any]:
        topic = f"cmnd/{device}/sensor-mode/J1/sensor-1"
        return [(topic, {"timestamp": stamp(i), "data": f"{200 + i:04x}"}) for i in range(count)]

    publish_all(publisher, sensor(fixed, 200) + sensor(other, 50))
    wait_for(lambda: count_rows(local_stack, fixed) == 200, 120, 0.5, "200 rows")
    wait_for(lambda: count_rows(local_stack, other) == 50, 120, 0.5, "50 rows of the other")
    assert [row[2] for row in stored(local_stack, fixed)] == [200.0 + i for i in range(200)]
    others_before = stored(local_stack, other)

    set_scaling_factor(devices_dsn, template, "J1", "sensor", "1", 0.1)
    summary = make(local_stack, "reprocess", f"DEVICE={fixed}", f"SINCE={started.isoformat()}")
    assert summary["confirmed"] is True, summary
    assert (summary["read"], summary["sent"], summary["decoded"]) == (200, 200, 200)
    assert (summary["updated"], summary["unchanged"], summary["inserted"]) == (200, 0, 0)
    assert summary["dead_lettered"] == {}
    after = stored(local_stack, fixed)
    assert len(after) == 200
    assert [row[2] for row in after] == pytest.approx([(200 + i) / 10 for i in range(200)])
    assert stored(local_stack, other) == others_before  # values and ingested_at untouched

    again = make(local_stack, "reprocess", f"DEVICE={fixed}", f"SINCE={started.isoformat()}")
    assert (again["read"], again["copies_skipped"]) == (200, 200)
    assert (again["updated"], again["unchanged"]) == (0, 200)
    assert count_rows(local_stack, fixed) == 200


def test_a_record_that_fails_again_keeps_its_history_and_stops_at_the_limit(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    mac = new_mac()
    device = f"f2-{mac}"
    publish_all(publisher, strike_messages(device, 1, component="strike-9"))
    [(first, letter)] = wait_for(lambda: letters_of(local_stack, device), 90, 0.5, "a letter")
    assert letter["reason"] == "unknown_device"
    provision(local_stack, mac, "F2-212")  # known now, but it has no strike-9 on J1

    def next_letter(count: int) -> tuple[Position, dict[str, Any]]:
        found = wait_for(
            lambda: [(p, v) for p, v in letters_of(local_stack, device)
                     if (v.get("redrive") or {}).get("count") == count],
            90, 0.5, f"a dead letter redriven {count} time(s)",
        )  # fmt: skip
        return found[0]

    assert make(local_stack, "redrive", f"DEVICE={device}", "MAX_REDRIVES=2")["sent"] == 1
    second, letter = next_letter(1)
    assert letter["reason"] == "unknown_component"
    assert [h["reason"] for h in letter["history"]] == ["unknown_device"]
    assert make(local_stack, "redrive", f"DEVICE={device}", "MAX_REDRIVES=2")["sent"] == 1
    third, letter = next_letter(2)
    assert (letter["stage"], letter["reason"]) == ("decode", "unknown_component")
    assert [h["reason"] for h in letter["history"]] == ["unknown_device", "unknown_component"]
    assert [Position.from_json(h["dead_letter"]) for h in letter["history"]] == [first, second]
    assert Position.from_json(letter["redrive"]["dead_letter"]) == second

    stopped = make(local_stack, "redrive", f"DEVICE={device}", "MAX_REDRIVES=2")
    assert (stopped["sent"], stopped["totals"]) == (0, {"at_limit": 1})
    [listed] = stopped["listed"]
    assert (listed["dead_letter"], listed["count"]) == (str(third), 2)
    assert len(letters_of(local_stack, device)) == 3
    assert count_rows(local_stack, device) == 0


def test_killing_the_redrive_midway_and_running_it_again_sends_every_letter_once(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    mac = new_mac()
    device = f"f2-{mac}"
    total = 300
    publish_all(publisher, strike_messages(device, total))
    letters = wait_for(
        lambda: (found := letters_of(local_stack, device)) and len(found) >= total and found,
        120, 0.5, f"{total} dead letters",
    )  # fmt: skip
    assert len(letters) == total
    positions = [p for p, _ in letters]
    provision(local_stack, mac, "F2-212")

    env = {**os.environ, **local_stack.env(), "PYTHONPATH": f"{ROOT}:{ROOT / 'functions'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.tools.redrive", "--device", device, "--reason",
         "unknown_device", "--rate", "20", "--commit-every", "40"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    committed = 0

    def follow(line: str) -> None:
        nonlocal committed
        if " committed " in line and " sent " in line:
            committed = int(line.rsplit(" sent ", 1)[1].split()[0])

    for line in process.stderr:
        follow(line)
        if committed >= 40:
            break

    def sent() -> int:
        return sum(redriven_to_raw(local_stack, positions).values())

    # more records acknowledged after that commit: the kill leaves them sent but uncommitted
    wait_for(lambda: sent() >= committed + 10, 60, 0.1, "sends after the commit")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    for line in process.stderr:  # what it logged before it died
        follow(line)
    sent_before_kill = sent()
    assert 40 <= committed < sent_before_kill < total, (committed, sent_before_kill)

    rest = make(local_stack, "redrive", "REASON=unknown_device", f"DEVICE={device}")
    assert rest["totals"].get("already_sent", 0) == sent_before_kill - committed, rest["totals"]
    assert rest["sent"] == total - sent_before_kill
    assert redriven_to_raw(local_stack, positions) == Counter(dict.fromkeys(positions, 1))
    wait_for(lambda: count_rows(local_stack, device) == total, 120, 0.5, f"{total} rows")
    assert make(local_stack, "redrive", "REASON=unknown_device", f"DEVICE={device}")["sent"] == 0
