"""The telemetry path on the real local stack: MQTT -> bridge -> Kafka -> decode -> sink -> rows.

Every claim here runs through real Mosquitto, Kafka, PostgreSQL, the gateway and the function
processes started by the ``local_stack`` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
import requests

from infra.local.stack import DEVICES_DB, MONITOR_USER, TIMESERIES_DB, LocalStack
from tests.kafka_support import read_topic_to_end
from tests.mqtt_support import Publisher
from tests.pipeline_support import component_name, payload_for, stamp
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

_mac_lock = threading.Lock()
_mac_counter = [0x100]


def new_device(stack: LocalStack, model: str = "F2-403") -> str:
    """Register a device of ``model`` (default template) and return its id."""
    with _mac_lock:
        _mac_counter[0] += 1
        device_id = f"f2-02f2e2e{_mac_counter[0]:05x}"
    with psycopg2.connect(stack.dsn(DEVICES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO device (device_id, model, serial_number) VALUES (%s, %s, %s)",
            (device_id, model, f"E2E-{device_id}"),
        )
    return device_id


def parameters(stack: LocalStack, device_id: str) -> list[dict[str, Any]]:
    with psycopg2.connect(stack.dsn(DEVICES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT connector_mode, connector, component_type, component_id, encoding_type,"
            " units, scaling_factor, value_width_bits FROM device_parameters"
            " WHERE device_id = %s ORDER BY connector, component_type, component_id",
            (device_id,),
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def rows(stack: LocalStack, device_id: str) -> list[dict[str, Any]]:
    with psycopg2.connect(stack.dsn(TIMESERIES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, connector_mode, connector, component_type, component_id, value,"
            " value_text, unit, topic FROM iot_measurements WHERE device_id = %s"
            " ORDER BY topic, component_id, time",
            (device_id,),
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture(params=["processes", "containers"])
def local_stack(request: pytest.FixtureRequest, local_stack: LocalStack) -> LocalStack:
    """Each test of this module on both backends: function replicas as processes, and as
    containers of the images `faas-cli up` ships (the session's ``container_stack``)."""
    if request.param == "processes":
        return local_stack
    stack: LocalStack = request.getfixturevalue("container_stack")
    return stack


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


def test_every_component_kind_is_decoded_and_stored(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    device = new_device(local_stack, "F2-403")
    params = parameters(local_stack, device)
    kinds = {p["component_type"] for p in params}
    assert {
        "strike",
        "door-sensors",
        "reader",
        "exit-buttons",
        "siren",
        "motion-sensor",
        "sensor",
    } <= kinds, kinds
    expected: dict[tuple[str, str], tuple[Any, Any]] = {}
    for i, param in enumerate(params):
        topic = (
            f"cmnd/{device}/{param['connector_mode']}/{param['connector']}/{component_name(param)}"
        )
        payload, produced = payload_for(param, i)
        publisher.publish_json(topic, payload)
        for cid, value in produced:
            expected[(topic, cid)] = (value, param["units"])
    stored = wait_for(
        lambda: (r := rows(local_stack, device)) and len(r) >= len(expected) and r, interval=0.5
    )
    assert stored, "no rows stored within the deadline"
    got = {(r["topic"], r["component_id"]): r for r in stored}
    assert set(got) == set(expected)
    for key, (value, unit) in expected.items():
        row = got[key]
        assert row["unit"] == unit, key
        if isinstance(value, str):
            assert row["value_text"] == value and row["value"] is None, key
        else:
            assert row["value"] == pytest.approx(value), key
    first = stored[0]
    assert first["time"].tzinfo is not None


def test_republishing_the_same_messages_adds_no_row(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    device = new_device(local_stack, "F2-212")
    params = [p for p in parameters(local_stack, device) if p["encoding_type"] == "boolean"][:2]
    assert params
    messages = []
    for i in range(20):
        param = params[i % len(params)]
        topic = (
            f"cmnd/{device}/{param['connector_mode']}/{param['connector']}/{component_name(param)}"
        )
        messages.append((topic, {"timestamp": stamp(i), "status": i % 2 == 0}))
    for topic, payload in messages:
        publisher.publish_json(topic, payload)
    assert (
        len(
            wait_for(
                lambda: len(rows(local_stack, device)) >= 20 and rows(local_stack, device),
                interval=0.5,
            )
        )
        == 20
    )
    for topic, payload in messages:
        publisher.publish_json(topic, payload)
    # The redelivered copies travel the whole path ahead of a marker on the same topic (one
    # key, one partition, in order); once the marker is stored the sink has seen them.
    marker_topic, _ = messages[0]
    publisher.publish_json(marker_topic, {"timestamp": stamp(10_000), "status": True})
    assert wait_for(lambda: stored_at(local_stack, device, stamp(10_000)), 60, interval=0.5)
    assert len(rows(local_stack, device)) == 21


def moment(timestamp: str) -> datetime:
    """The row time of a message stamped ``timestamp`` (as ``stamp`` writes it, UTC)."""
    return datetime.strptime(timestamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


def stored_at(stack: LocalStack, device_id: str, timestamp: str) -> bool:
    """Whether a row of ``device_id`` for the message stamped ``timestamp`` is stored."""
    return any(r["time"] == moment(timestamp) for r in rows(stack, device_id))


def dead_letters(stack: LocalStack, since: float) -> list[dict[str, Any]]:
    """The dead letters written since ``since`` (what the topic holds now)."""
    records = read_topic_to_end(f"127.0.0.1:{stack.ports.kafka}", "iot_dead_letter")
    return [json.loads(m.value) for m in records if m.timestamp / 1000 >= since - 5]


def test_bad_inputs_are_dead_lettered_with_stage_and_reason_and_valid_ones_still_stored(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    started = time.time()
    device = new_device(local_stack, "F2-403")
    params = parameters(local_stack, device)
    by_type = {p["component_type"]: p for p in params}

    def topic_of(ctype: str, name: str | None = None) -> str:
        p = by_type[ctype]
        return f"cmnd/{device}/{p['connector_mode']}/{p['connector']}/{name or component_name(p)}"

    unknown_device = "f2-0000000dead0"
    bad = {
        "unknown_device": (
            f"cmnd/{unknown_device}/access-control-mode/J1/strike-1",
            {"timestamp": stamp(), "status": True},
        ),
        "unknown_component": (
            topic_of("strike", "strike-9"),
            {"timestamp": stamp(), "status": True},
        ),
        "bad_json": (topic_of("strike"), "{not json"),
        "bad_hex": (topic_of("sensor"), {"timestamp": stamp(), "data": "zz-not-hex"}),
        "missing_timestamp": (topic_of("siren"), {"status": True}),
        "bad_topic": (
            f"cmnd/{device}/nonsense-mode/J9/strike-1",
            {"timestamp": stamp(), "status": True},
        ),
    }
    for topic, payload in bad.values():
        publisher.publish_json(topic, payload)
    good_topic = topic_of("strike")
    publisher.publish_json(good_topic, {"timestamp": stamp(5), "status": False})
    assert wait_for(lambda: rows(local_stack, device), interval=0.5), (
        "the valid message after the bad ones was not stored"
    )

    def letters_for_this_test() -> list[dict[str, Any]]:
        found = []
        for letter in dead_letters(local_stack, started):
            text = json.dumps(letter)
            if device in text or unknown_device in text:
                found.append(letter)
        return found

    letters = wait_for(
        lambda: (ls := letters_for_this_test()) and len(ls) >= len(bad) and ls,
        timeout=60,
        interval=0.5,
    )
    assert letters and len(letters) >= len(bad), letters
    for letter in letters:
        assert letter["stage"] and letter["reason"] and letter["error"], letter
    reasons = " ".join(f"{x['stage']}:{x['reason']}:{x['error']}" for x in letters)
    for expected in ("unknown_device", "unknown_component", "bridge"):
        assert expected in reasons, reasons
    assert len(rows(local_stack, device)) == 1


def test_a_single_record_as_openfaas_connector_sends_it_works_like_a_batch(
    local_stack: LocalStack,
) -> None:
    device = new_device(local_stack, "F2-212")
    param = next(p for p in parameters(local_stack, device) if p["encoding_type"] == "boolean")
    topic = f"cmnd/{device}/{param['connector_mode']}/{param['connector']}/{component_name(param)}"
    raw = {
        "topic": topic,
        "payload": json.dumps({"timestamp": stamp(), "status": True}),
        "received_at": datetime.now(UTC).isoformat(),
        "qos": 1,
    }
    resp = requests.post(
        f"http://127.0.0.1:{local_stack.ports.gateway}/function/decode",
        data=json.dumps(raw),
        headers={
            "Content-Type": "application/json",
            "X-Topic": "raw_iot_data",
            "X-Kafka-Partition": "0",
            "X-Kafka-Offset": "0",
            "X-Kafka-Key": device,
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert wait_for(lambda: rows(local_stack, device), interval=0.5), "single record not stored"


def test_killing_the_bridge_and_a_function_mid_stream_loses_nothing_and_doubles_nothing(
    local_stack: LocalStack, publisher: Publisher
) -> None:
    device = new_device(local_stack, "F2-212")
    param = next(p for p in parameters(local_stack, device) if p["encoding_type"] == "boolean")
    topic = f"cmnd/{device}/{param['connector_mode']}/{param['connector']}/{component_name(param)}"
    total = 600
    for i in range(total):
        publisher.client.publish(
            topic, json.dumps({"timestamp": stamp(i), "status": i % 2 == 0}), qos=1
        )
        if i == 150:
            bridge_pid = int(local_stack.pid_path("bridge").read_text())
            os.kill(bridge_pid, signal.SIGKILL)
        if i == 300:
            gateway_logs = local_stack.state_dir / "gateway" / "logs"
            assert any(gateway_logs.glob("sink-*.log"))
            _kill_one_replica(local_stack, "sink")
    local_stack.up()  # restarts the bridge; the gateway's supervisor restarted the sink replica
    # A marker after the stream, on its topic (one key, one partition, in order): once it is
    # stored, every copy the kills caused has been through the sink too.
    marker = stamp(total)
    publisher.publish_json(topic, {"timestamp": marker, "status": True})
    wait_for(lambda: stored_at(local_stack, device, marker), timeout=120, interval=0.5)
    stored = [r for r in rows(local_stack, device) if r["time"] != moment(marker)]
    assert stored and len(stored) == total, len(stored)


def _kill_one_replica(stack: LocalStack, function: str) -> None:
    if stack.containers:
        with stack.gateway_client() as gateway:
            listed = next(f for f in gateway.functions() if f.name == function)
        container = listed.runtime["instances"][0]
        killed = subprocess.run(
            ["/usr/bin/docker", "kill", "--signal", "KILL", container],
            env={"DOCKER_HOST": stack.container_view()["docker_host"], "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert killed.returncode == 0, killed.stderr
        return
    needle = str(stack.state_dir / "gateway" / "secrets" / function).encode()
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            with open(f"/proc/{proc}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ and b"F2_UPSTREAM_PORT" in environ:
            os.kill(int(proc), signal.SIGKILL)
            return
    raise AssertionError(f"no replica of {function} found")
