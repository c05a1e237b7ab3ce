"""Downlink commands on the whole local stack (real gateway, functions, broker, Kafka, databases):
a simulated F2-403 unlocked through the gateway, a silent device's late reply travelling bridge ->
Kafka -> connector -> command-reply, an expired command, and the operator's tools."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg2
import pytest
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from f2lib.contracts.topics import device_command_filter, reply_topic
from infra.local.stack import TIMESERIES_DB, LocalStack
from infra.tools.simulator import Fleet, FleetConfig, FleetSnapshot, parse_mix
from infra.tools.simulator.payloads import utc_now
from provision.pki import generate_csr, generate_key, private_key_pem
from tests.fixtures.provision import DeviceCredentials, mqtt_connect, subscribe
from tests.kafka_support import read_topic
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def gateway(stack: LocalStack) -> str:
    return f"http://127.0.0.1:{stack.ports.gateway}"


def command(stack: LocalStack, body: dict[str, Any], timeout: float = 45) -> requests.Response:
    token = stack.env()["COMMAND_TOKEN"]
    return requests.post(
        f"{gateway(stack)}/function/command",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def audit(stack: LocalStack, command_id: str) -> dict[str, Any]:
    token = stack.env()["COMMAND_TOKEN"]
    answer = requests.get(
        f"{gateway(stack)}/function/command/{command_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def fleet_config(stack: LocalStack, cert_dir: Path, model: str, seed: int) -> FleetConfig:
    env = stack.env()
    return FleetConfig(
        mix=parse_mix(f"{model}:1", None),
        seed=seed,
        rate=0.05,  # hardly any random traffic beside what the commands cause
        cert_dir=cert_dir,
        gateway_url=env["GATEWAY_URL"],
        provision_token=SecretStr(env["PROVISION_TOKEN"]),
        mqtt_host=env["MQTT_HOST"],
        mqtt_port=int(env["MQTT_TLS_PORT"]),
        ca_cert=Path(env["CA_CERT"]),
        devices_dsn=SecretStr(env["DEVICES_DSN"]),
    )


class RunningFleet:
    """A fleet running in a thread until ``stop``; ``ready`` once every device listens."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.latest: dict[str, FleetSnapshot] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.fleet.run(stop=self._stop, on_tick=lambda s: self.latest.__setitem__("s", s))

    def start(self) -> RunningFleet:
        self.fleet.provision_all()
        self._thread.start()
        assert wait_for(
            lambda: "s" in self.latest and self.latest["s"].listening == len(self.fleet.identities),
            timeout=60,
        ), self.latest
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def device_id(self) -> str:
        return self.fleet.identities[0].device_id


@pytest.fixture
def hybrid(local_stack: LocalStack, tmp_path: Path) -> Iterator[RunningFleet]:
    running = RunningFleet(Fleet(fleet_config(local_stack, tmp_path / "devices", "F2-403", 1313)))
    running.start()
    yield running
    running.stop()


def strike_rows(stack: LocalStack, device_id: str, since: datetime) -> list[tuple[datetime, float]]:
    with psycopg2.connect(stack.dsn(TIMESERIES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, value FROM iot_measurements WHERE device_id = %s AND topic = %s"
            " AND time >= %s ORDER BY time",
            (device_id, f"cmnd/{device_id}/access-control-mode/J1/strike-1", since),
        )
        return list(cur.fetchall())


def test_unlock_strike_1_of_a_simulated_f2_403_through_the_gateway(
    local_stack: LocalStack, hybrid: RunningFleet
) -> None:
    device = hybrid.device_id
    asked = datetime.now(UTC) - timedelta(milliseconds=500)
    started = time.monotonic()
    answer = command(
        local_stack,
        {
            "device_id": device,
            "connector": "J1",
            "component": "strike-1",
            "action": "unlock",
            "params": {"duration_s": 5},
            "wait_s": 5,
        },
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and elapsed < 5, (body, elapsed)

    def true_then_false() -> list[tuple[datetime, float]] | None:
        rows = strike_rows(local_stack, device, asked)
        return rows if any(v == 0.0 for _, v in rows) else None

    rows = wait_for(true_then_false, timeout=60) and strike_rows(local_stack, device, asked)
    assert rows, "no strike rows after the command"
    assert rows[0][1] == 1.0, rows
    unlocked = rows[0][0]
    locked = next(t for t, v in rows if v == 0.0)
    assert 4.0 <= (locked - unlocked).total_seconds() <= 7.0, rows

    row = audit(local_stack, body["command_id"])
    assert row["requested_by"] == "operator"
    assert (row["device_id"], row["connector"], row["component"], row["action"]) == (
        device,
        "J1",
        "strike-1",
        "unlock",
    )
    assert row["params"] == {"duration_s": 5} and row["status"] == "ok"
    assert row["result"]["result"] == "ok"
    # The bridge forwards the reply too: whichever path records it first wins, once.
    assert row["answered_via"] in ("command", "command_reply")
    requested = datetime.fromisoformat(row["requested_at"])
    answered = datetime.fromisoformat(row["answered_at"])
    assert requested <= answered <= requested + timedelta(seconds=5)


def test_the_operator_cli_and_make_env_send_a_command_and_print_its_answer(
    local_stack: LocalStack, hybrid: RunningFleet
) -> None:
    env = dict(
        os.environ,
        F2_STATE_DIR=str(local_stack.state_dir),
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
    )
    printed = subprocess.run(
        [sys.executable, "-m", "infra.local", "env"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in printed.splitlines()
        if line.startswith("export ")
    )
    assert exported["COMMAND_TOKEN"] and exported["PROVISION_TOKEN"]
    assert exported["COMMAND_TOKEN"] != exported["PROVISION_TOKEN"]
    env.update(GATEWAY_URL=exported["GATEWAY_URL"], COMMAND_TOKEN=exported["COMMAND_TOKEN"])
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.tools.command",
            "send",
            hybrid.device_id,
            "J2",
            "siren-1",
            "on",
            "--params",
            '{"duration_s": 2}',
            "--wait",
            "5",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["status"] == "ok"
    assert f"command {answer['command_id']} ok" in sent.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "infra.tools.command", "list", hybrid.device_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert answer["command_id"] in {c["command_id"] for c in json.loads(listed.stdout)["commands"]}


def test_an_expired_command_is_rejected_by_the_device_and_recorded_as_expired(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    fleet = Fleet(
        fleet_config(local_stack, tmp_path / "devices", "F2-301", 1414),
        clock=lambda: utc_now() + timedelta(seconds=120),  # the device's clock runs ahead
    )
    running = RunningFleet(fleet).start()
    try:
        answer = command(
            local_stack,
            {
                "device_id": running.device_id,
                "connector": "J1",
                "component": "siren-1",
                "action": "on",
                "params": {"duration_s": 10},
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "expired"
        row = audit(local_stack, answer.json()["command_id"])
        assert row["status"] == "expired" and row["result"]["result"] == "expired"
    finally:
        running.stop()


def provision_device(stack: LocalStack, tmp_path: Path) -> DeviceCredentials:
    mac = f"02{uuid.uuid4().hex[:10]}"
    key = generate_key()
    answer = requests.post(
        f"{gateway(stack)}/function/provision",
        json={
            "mac": mac,
            "model": "F2-212",
            "serial_number": f"E2E-{mac}",
            "csr": generate_csr(key, "x").decode(),
        },
        headers={"Authorization": f"Bearer {stack.env()['PROVISION_TOKEN']}"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    (tmp_path / "device.crt").write_text(body["certificate"])
    (tmp_path / "device.key").write_bytes(private_key_pem(key))
    return DeviceCredentials(tmp_path / "device.crt", tmp_path / "device.key", body["device_id"])


def reply(client: mqtt.Client, device_id: str, command_id: str, result: str) -> None:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.CorrelationData = command_id.encode()
    body = {"command_id": command_id, "result": result, "detail": "after the 202"}
    client.publish(
        reply_topic(device_id), json.dumps(body), qos=1, properties=properties
    ).wait_for_publish(10)


def dead_letters_for(stack: LocalStack, command_id: str) -> list[dict[str, Any]]:
    records = read_topic(
        f"127.0.0.1:{stack.ports.kafka}", "iot_dead_letter", lambda rs: False, timeout=3
    )
    return [json.loads(r.value) for r in records if command_id.encode() in r.value]


def test_a_silent_devices_late_reply_reaches_the_audit_row_once_through_kafka(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    creds = provision_device(local_stack, tmp_path)
    env = local_stack.env()
    conn = mqtt_connect(
        env["MQTT_HOST"], int(env["MQTT_TLS_PORT"]), ca_cert=Path(env["CA_CERT"]), device=creds
    )
    assert conn.accepted, conn.reason
    try:
        subscribe(conn, device_command_filter(creds.device_id))
        answer = command(
            local_stack,
            {
                "device_id": creds.device_id,
                "connector": "J2",
                "component": "strike-2",
                "action": "unlock",
                "params": {"duration_s": 3},
                "wait_s": 1,
            },
        )
        assert answer.status_code == 202, answer.text
        command_id = answer.json()["command_id"]
        assert wait_for(lambda: any(m.topic.startswith("ctrl/") for m in conn.received))
        assert audit(local_stack, command_id)["status"] == "sent"

        reply(conn.client, creds.device_id, command_id, "ok")
        assert wait_for(lambda: audit(local_stack, command_id)["status"] == "ok", timeout=60)
        first = audit(local_stack, command_id)
        assert first["answered_via"] == "command_reply"
        assert first["result"] == {"result": "ok", "detail": "after the 202"}

        # The device repeats itself (a redelivery), then answers a command that does not exist:
        # once that one is dead-lettered, the repeat before it (same key, same partition) has
        # been handled too.
        reply(conn.client, creds.device_id, command_id, "rejected")
        unknown = str(uuid.uuid4())
        reply(conn.client, creds.device_id, unknown, "ok")
        assert wait_for(lambda: dead_letters_for(local_stack, unknown), timeout=60)
        (letter,) = dead_letters_for(local_stack, unknown)
        assert (letter["stage"], letter["reason"]) == ("command_reply", "unknown_command")
        assert audit(local_stack, command_id) == first

        # The connector delivering the same Kafka record again changes nothing either.
        records = read_topic(
            f"127.0.0.1:{local_stack.ports.kafka}",
            "iot_command_replies",
            lambda rs: any(command_id.encode() in r.value for r in rs),
            timeout=30,
        )
        original = next(r for r in records if command_id.encode() in r.value)
        again = requests.post(
            f"{gateway(local_stack)}/function/command-reply",
            json=[
                {
                    "topic": "iot_command_replies",
                    "partition": original.partition,
                    "offset": original.offset,
                    "key": original.key.decode(),
                    "value": json.loads(original.value),
                }
            ],
            timeout=30,
        )
        assert again.status_code == 200 and again.json()["duplicates"] == 1, again.text
        assert audit(local_stack, command_id) == first
    finally:
        conn.close()
