"""Downlink commands against the real broker and database: the command function (served by the
template's index.py), devices over mTLS provisioned by the provision function, and the ACL.

Every "nothing was published" claim waits for a positive signal: a sentinel published after the
requests, seen by the same subscriber on ``ctrl/#`` (one broker delivers to one subscriber in
order), never for a fixed time.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg2
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from f2lib.contracts.topics import device_command_filter, reply_topic
from infra.deploy.mosquitto.config import BRIDGE_TOPICS, COMMAND_TOPICS, MONITOR_TOPICS
from infra.local.launch.mosquitto import MosquittoServer
from provision.pki import generate_csr, generate_key, private_key_pem
from tests.fixtures.provision import (
    Connection,
    DeviceCredentials,
    FunctionEndpoint,
    mqtt_connect,
    serve_function,
    subscribe,
)
from tests.fuzz_support import BODIES, COMMAND_FIELDS, dumps
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = secrets.token_urlsafe(24)
AUDITOR_TOKEN = secrets.token_urlsafe(24)
COMMAND_PASSWORD = secrets.token_urlsafe(16)
BRIDGE_USER, MONITOR_USER = ("t-bridge", secrets.token_urlsafe(16)), ("t-monitor", "m" * 20)


def random_mac() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] &= 0xFE
    return raw.hex()


def provision(fn: FunctionEndpoint, tmp: Path, model: str = "F2-403") -> DeviceCredentials:
    mac, key = random_mac(), generate_key()
    answer = fn.post(
        {
            "mac": mac,
            "model": model,
            "serial_number": f"SN-{mac}",
            "csr": generate_csr(key, "x").decode(),
        }
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    folder = tmp / body["device_id"]
    folder.mkdir()
    (folder / "device.crt").write_text(body["certificate"])
    (folder / "device.key").write_bytes(private_key_pem(key))
    return DeviceCredentials(folder / "device.crt", folder / "device.key", body["device_id"])


@dataclass
class Device:
    """A device over mTLS, subscribed to its commands, answering ``answer`` (None: silent)."""

    connection: Connection
    device_id: str
    answer: str | None = "ok"
    commands: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.commands.append(message)
        if self.answer is not None and message.topic.startswith("ctrl/"):
            self.reply(message, self.answer)

    def reply(self, message: mqtt.MQTTMessage, result: str, topic: str | None = None) -> None:
        command = json.loads(message.payload)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        body = {"command_id": command["command_id"], "result": result, "detail": f"test {result}"}
        target = topic or message.properties.ResponseTopic  # type: ignore[union-attr]
        self.connection.client.publish(target, json.dumps(body), qos=1, properties=properties)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture(scope="module")
def broker(secure_mosquitto: MosquittoServer) -> MosquittoServer:
    """The session's mTLS broker with the command sender and two restricted internal users."""
    secure_mosquitto.add_user("f2-command", COMMAND_PASSWORD, COMMAND_TOPICS)
    secure_mosquitto.add_user(*BRIDGE_USER, BRIDGE_TOPICS)
    secure_mosquitto.add_user(*MONITOR_USER, MONITOR_TOPICS)
    return secure_mosquitto


@pytest.fixture(scope="module")
def command_fn(
    runtime_root: Path, registry_db: str, broker: MosquittoServer
) -> Iterator[FunctionEndpoint]:
    endpoint = serve_function(
        "command",
        runtime_root / "command-fn",
        secrets={
            "command-token": f"# callers\noperator:{OPERATOR_TOKEN}\nauditor:{AUDITOR_TOKEN}\n",
            "devices-dsn": registry_db,
            "mqtt-command-password": COMMAND_PASSWORD,
        },
        env={
            "MQTT_HOST": broker.host,
            "MQTT_PORT": str(broker.port),
            "MQTT_USERNAME": "f2-command",
            "MAX_BODY_BYTES": "2048",
        },
        token=OPERATOR_TOKEN,
    )
    yield endpoint
    endpoint.process.stop()


@pytest.fixture
def observer(broker: MosquittoServer) -> Iterator[Connection]:
    """An internal subscriber on ctrl/# and ctrl-resp/#: every downlink message and reply."""
    conn = mqtt_connect(
        broker.host, broker.port, username=broker.username, password=broker.password
    )
    assert conn.accepted, conn.reason
    subscribe(conn, "ctrl/#")
    subscribe(conn, "ctrl-resp/#")
    yield conn
    conn.close()


def connect_device(
    broker: MosquittoServer, certs_dir: Path, creds: DeviceCredentials, answer: str | None = "ok"
) -> Device:
    conn = mqtt_connect(
        broker.host, broker.tls_port or 0, ca_cert=certs_dir / "ca.crt", device=creds
    )
    assert conn.accepted, conn.reason
    device = Device(conn, creds.device_id, answer)
    subscribe(conn, device_command_filter(creds.device_id))
    conn.client.on_message = device.on_message
    return device


@pytest.fixture
def f2_403(provision_fn: FunctionEndpoint, tmp_path: Path) -> DeviceCredentials:
    return provision(provision_fn, tmp_path)


def send(
    fn: FunctionEndpoint, body: Any, token: str | None = None, **kwargs: Any
) -> requests.Response:
    return fn.post(body, headers={"Authorization": f"Bearer {token or fn.token}"}, **kwargs)


def unlock(device_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "connector": "J1",
        "component": "strike-1",
        "action": "unlock",
        "params": {"duration_s": 5},
        **extra,
    }


def audit_rows(dsn: str, where: str = "true", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM device_command WHERE {where} ORDER BY requested_at", args)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def registry_state(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM device ORDER BY device_id")
        devices = cur.fetchall()
        cur.execute("SELECT serial, revoked_at FROM device_certificate ORDER BY serial")
        return devices + cur.fetchall()


def sentinel_seen(broker: MosquittoServer, observer: Connection) -> None:
    """Publish a sentinel on ctrl/# as the command sender and wait until the observer has it."""
    topic = f"ctrl/f2-{secrets.token_hex(6)}/access-control-mode/J1/strike-1"
    conn = mqtt_connect(broker.host, broker.port, username="f2-command", password=COMMAND_PASSWORD)
    try:
        assert conn.accepted, conn.reason
        conn.client.publish(topic, b"sentinel", qos=1).wait_for_publish(5)
        assert wait_for(lambda: any(m.topic == topic for m in observer.received)), "no sentinel"
    finally:
        conn.close()


def test_unlock__the_device_answers_ok_within_wait_and_the_audit_row_is_complete(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
    registry_db: str,
) -> None:
    device = connect_device(broker, certs_dir, f2_403)
    try:
        answer = send(command_fn, unlock(f2_403.device_id, wait_s=5))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ok" and body["detail"] == "test ok"
        assert 0 <= body["reply_latency_s"] < 5
        (message,) = device.commands
        assert message.topic == f"ctrl/{f2_403.device_id}/access-control-mode/J1/strike-1"
        assert message.qos == 1
        payload = json.loads(message.payload)
        assert set(payload) == {"command_id", "action", "params", "expires_at"}
        assert payload["command_id"] == body["command_id"]
        assert payload["params"] == {"duration_s": 5}
        props = message.properties
        assert props.ResponseTopic == reply_topic(f2_403.device_id)  # type: ignore[union-attr]
        assert props.CorrelationData == body["command_id"].encode()  # type: ignore[union-attr]
        assert 0 < props.MessageExpiryInterval <= 30  # type: ignore[union-attr]
        (row,) = audit_rows(registry_db, "command_id = %s", (body["command_id"],))
        assert row["requested_by"] == "operator" and row["status"] == "ok"
        assert (row["device_id"], row["connector"], row["component"], row["action"]) == (
            f2_403.device_id,
            "J1",
            "strike-1",
            "unlock",
        )
        assert row["connector_mode"] == "access-control-mode"
        assert row["params"] == {"duration_s": 5}
        assert row["result"] == {"result": "ok", "detail": "test ok"}
        assert row["answered_via"] == "command"
        assert row["requested_at"] <= row["published_at"] <= row["answered_at"] < row["expires_at"]
        got = requests.get(
            f"{command_fn.url}/{body['command_id']}",
            headers={"Authorization": f"Bearer {AUDITOR_TOKEN}"},
            timeout=10,
        )
        assert got.status_code == 200 and got.json()["status"] == "ok"
        assert got.json()["requested_by"] == "operator"
    finally:
        device.close()


def test_every_action_of_the_contract_reaches_the_device(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
) -> None:
    device = connect_device(broker, certs_dir, f2_403)
    requests_ = [
        ("J1", "strike-1", "lock", {}),
        ("J2", "siren-1", "on", {"duration_s": 300}),
        ("J2", "siren-1", "off", {}),
        ("J1", "reader-1", "indicator", {"color": "green", "duration_s": 3}),
    ]
    try:
        for connector, component, action, params in requests_:
            body = {
                "device_id": f2_403.device_id,
                "connector": connector,
                "component": component,
                "action": action,
                "params": params,
            }
            answer = send(command_fn, body)
            assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
        topics = [m.topic.rsplit("/", 2)[1:] for m in device.commands]
        assert topics == [[c, p] for c, p, _, _ in requests_]
        assert json.loads(device.commands[-1].payload)["params"] == {
            "color": "green",
            "beep": False,
            "duration_s": 3,
        }
    finally:
        device.close()


def test_a_silent_device__gets_202_sent_and_its_row_stays_sent(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
    registry_db: str,
) -> None:
    device = connect_device(broker, certs_dir, f2_403, answer=None)
    try:
        answer = send(command_fn, unlock(f2_403.device_id, wait_s=1))
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "sent" and body["expires_at"]
        assert wait_for(lambda: len(device.commands) == 1)
        (row,) = audit_rows(registry_db, "command_id = %s", (body["command_id"],))
        assert row["status"] == "sent" and row["published_at"] and row["answered_at"] is None
    finally:
        device.close()


def test_the_device_answering_expired_or_rejected_is_recorded_so(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
    registry_db: str,
) -> None:
    for result in ("expired", "rejected"):
        device = connect_device(broker, certs_dir, f2_403, answer=result)
        try:
            answer = send(command_fn, unlock(f2_403.device_id))
            assert answer.status_code == 200 and answer.json()["status"] == result
            (row,) = audit_rows(registry_db, "command_id = %s", (answer.json()["command_id"],))
            assert row["status"] == result and row["answered_at"] is not None
        finally:
            device.close()


def test_a_reply_from_another_device_does_not_answer_the_command(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    provision_fn: FunctionEndpoint,
    tmp_path: Path,
    registry_db: str,
) -> None:
    target = connect_device(broker, certs_dir, provision(provision_fn, tmp_path), answer=None)
    other = connect_device(broker, certs_dir, provision(provision_fn, tmp_path), answer=None)

    def forge(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        target.commands.append(message)
        other.reply(message, "ok", topic=reply_topic(other.device_id))

    target.connection.client.on_message = forge
    try:
        answer = send(command_fn, unlock(target.device_id, wait_s=1))
        assert answer.status_code == 202, answer.text
        (row,) = audit_rows(registry_db, "command_id = %s", (answer.json()["command_id"],))
        assert row["status"] == "sent"
    finally:
        target.close()
        other.close()


@dataclass(frozen=True)
class Bad:
    name: str
    status: int
    error: str
    body: Any = None
    raw: bytes | None = None
    token: str | None = "operator"
    content_type: str = "application/json"


def bad_requests(device: str, revoked: str) -> list[Bad]:
    good = unlock(device)
    return [
        Bad("missing token", 401, "missing_token", good, token=None),
        Bad("wrong token", 401, "invalid_token", good, token="wrong-" * 5),
        Bad("malformed JSON", 400, "invalid_json", raw=b'{"device_id": '),
        Bad("not an object", 400, "invalid_body", raw=b"[]"),
        Bad("oversized body", 413, "body_too_large", raw=b'{"pad": "' + b"x" * 4096 + b'"}'),
        Bad("wrong content type", 415, "unsupported_media_type", good, content_type="text/plain"),
        Bad("unknown field", 400, "unknown_field", {**good, "force": True}),
        Bad(
            "missing field", 400, "missing_field", {k: v for k, v in good.items() if k != "action"}
        ),
        Bad("bad device id", 400, "invalid_device_id", {**good, "device_id": "door-1"}),
        Bad("unknown device", 404, "unknown_device", {**good, "device_id": "f2-0000000dead0"}),
        Bad("revoked device", 409, "device_not_active", {**good, "device_id": revoked}),
        Bad("bad connector", 400, "invalid_connector", {**good, "connector": "J9"}),
        Bad(
            "component not in template",
            422,
            "component_not_in_template",
            {**good, "component": "strike-2"},
        ),
        Bad(
            "component at another connector",
            422,
            "component_not_in_template",
            {**good, "connector": "J2"},
        ),
        Bad(
            "component takes no command",
            422,
            "component_not_commandable",
            {**good, "component": "door-sensors"},
        ),
        Bad("unknown action", 422, "unknown_action", {**good, "action": "open"}),
        Bad("action of another kind", 422, "unknown_action", {**good, "action": "on"}),
        Bad("parameter out of range", 422, "invalid_param", {**good, "params": {"duration_s": 61}}),
        Bad("parameter missing", 422, "missing_param", {**good, "params": {}}),
        Bad(
            "parameter unknown", 422, "unknown_param", {**good, "params": {"duration_s": 5, "x": 1}}
        ),
        Bad("wait too long", 400, "invalid_wait", {**good, "wait_s": 31}),
    ]


def test_bad_requests__each_gets_a_named_4xx_nothing_is_published_and_the_registry_is_unchanged(
    command_fn: FunctionEndpoint,
    provision_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    observer: Connection,
    registry_db: str,
    tmp_path: Path,
) -> None:
    creds = provision(provision_fn, tmp_path)
    revoked = provision(provision_fn, tmp_path)
    assert provision_fn.delete(revoked.device_id).status_code == 200
    device = connect_device(broker, certs_dir, creds)
    before = registry_state(registry_db)
    cases = bad_requests(creds.device_id, revoked.device_id)
    assert len(cases) >= 20
    try:
        for case in cases:
            started = len(audit_rows(registry_db))
            headers = {"Content-Type": case.content_type}
            if case.token == "operator":
                headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
            elif case.token is not None:
                headers["Authorization"] = f"Bearer {case.token}"
            data = case.raw if case.raw is not None else json.dumps(case.body).encode()
            answer = requests.post(command_fn.url, data=data, headers=headers, timeout=15)
            assert answer.status_code == case.status, (case.name, answer.text)
            error = answer.json()
            assert error["error"] == case.error and error["message"], (case.name, error)
            rows = audit_rows(registry_db)[started:]
            if case.token == "operator":
                (row,) = rows
                assert row["status"] == "refused" and row["requested_by"] == "operator", case.name
                assert row["result"]["error"] == case.error, case.name
            else:
                assert rows == [], case.name
        sentinel_seen(broker, observer)
        ours = [
            m
            for m in observer.received
            if creds.device_id in m.topic or revoked.device_id in m.topic
        ]
        assert ours == [] and device.commands == []
        assert registry_state(registry_db) == before
    finally:
        device.close()


def test_a_revoked_device_gets_no_command(
    command_fn: FunctionEndpoint,
    provision_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    observer: Connection,
    tmp_path: Path,
) -> None:
    creds = provision(provision_fn, tmp_path)
    device = connect_device(broker, certs_dir, creds)
    try:
        assert send(command_fn, unlock(creds.device_id)).status_code == 200
        assert provision_fn.delete(creds.device_id).status_code == 200
        answer = send(command_fn, unlock(creds.device_id))
        assert answer.status_code == 409 and answer.json()["error"] == "device_not_active"
        sentinel_seen(broker, observer)
        assert (
            len([m for m in observer.received if m.topic.startswith(f"ctrl/{creds.device_id}/")])
            == 1
        )
        assert len(device.commands) == 1
    finally:
        device.close()


def test_acl__a_device_cannot_subscribe_to_another_devices_commands(
    command_fn: FunctionEndpoint,
    provision_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    target = connect_device(broker, certs_dir, provision(provision_fn, tmp_path))
    snoop = connect_device(broker, certs_dir, provision(provision_fn, tmp_path))
    subscribe(snoop.connection, device_command_filter(target.device_id))
    subscribe(snoop.connection, "ctrl/#")
    try:
        assert send(command_fn, unlock(target.device_id)).status_code == 200
        assert send(command_fn, unlock(snoop.device_id)).status_code == 200  # the sentinel
        assert [m.topic.split("/")[1] for m in target.commands] == [target.device_id]
        assert wait_for(lambda: len(snoop.commands) >= 1)
        assert {m.topic.split("/")[1] for m in snoop.commands} == {snoop.device_id}
    finally:
        target.close()
        snoop.close()


def test_acl__a_device_cannot_answer_on_another_devices_reply_topic_nor_write_ctrl(
    provision_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    observer: Connection,
    tmp_path: Path,
) -> None:
    a = connect_device(broker, certs_dir, provision(provision_fn, tmp_path))
    b = provision(provision_fn, tmp_path)
    internal = mqtt_connect(
        broker.host, broker.port, username=broker.username, password=broker.password
    )
    subscribe(internal, "cmnd/#")
    client = a.connection.client
    reply = json.dumps({"command_id": str(uuid.uuid4()), "result": "ok"})
    try:
        client.publish(reply_topic(b.device_id), reply, qos=1).wait_for_publish(5)
        for target in (a.device_id, b.device_id):
            topic = f"ctrl/{target}/access-control-mode/J1/strike-1"
            client.publish(topic, b'{"action": "unlock"}', qos=1).wait_for_publish(5)
        client.publish("ctrl/elsewhere", b"{}", qos=1).wait_for_publish(5)
        client.publish(reply_topic(a.device_id), reply, qos=1).wait_for_publish(5)  # allowed
        own = f"cmnd/{a.device_id}/access-control-mode/J1/strike-1"
        client.publish(own, b'{"status": true}', qos=1).wait_for_publish(5)  # sentinel
        assert wait_for(lambda: any(m.topic == own for m in internal.received))
        assert wait_for(lambda: any(m.topic == reply_topic(a.device_id) for m in observer.received))
        seen = {m.topic for m in observer.received}
        assert reply_topic(b.device_id) not in seen
        assert not any(t.startswith("ctrl/") for t in seen if a.device_id in t or b.device_id in t)
        assert "ctrl/elsewhere" not in seen
    finally:
        a.close()
        internal.close()


def test_acl__only_the_command_sender_among_internal_users_writes_ctrl(
    broker: MosquittoServer, observer: Connection
) -> None:
    topic = f"ctrl/f2-{secrets.token_hex(6)}/access-control-mode/J1/strike-1"
    for user, password in (BRIDGE_USER, MONITOR_USER):
        conn = mqtt_connect(broker.host, broker.port, username=user, password=password)
        assert conn.accepted, conn.reason
        try:
            conn.client.publish(topic, f"from {user}".encode(), qos=1).wait_for_publish(5)
        finally:
            conn.close()
    sentinel_seen(broker, observer)
    assert not [m for m in observer.received if m.topic == topic]


def test_listing__pages_a_devices_commands_newest_first(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
) -> None:
    device = connect_device(broker, certs_dir, f2_403)
    try:
        sent = [send(command_fn, unlock(f2_403.device_id)).json()["command_id"] for _ in range(3)]
    finally:
        device.close()
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    first = requests.get(
        command_fn.url,
        params={"device_id": f2_403.device_id, "limit": 2},
        headers=headers,
        timeout=10,
    ).json()
    assert [c["command_id"] for c in first["commands"]] == sent[::-1][:2]
    rest = requests.get(
        command_fn.url,
        params={"device_id": f2_403.device_id, "limit": 2, "before": first["next_before"]},
        headers=headers,
        timeout=10,
    ).json()
    assert [c["command_id"] for c in rest["commands"]] == [sent[0]]
    assert rest["next_before"] is None


def test_metrics_and_logs__count_commands_and_hold_no_token(
    command_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    f2_403: DeviceCredentials,
) -> None:
    device = connect_device(broker, certs_dir, f2_403)
    try:
        assert send(command_fn, unlock(f2_403.device_id)).status_code == 200
    finally:
        device.close()
    base = command_fn.url.rsplit("/function/", 1)[0]
    text = requests.get(f"{base}/_/metrics", timeout=10).text
    ok = re.search(r'f2_command_requests_total\{action="unlock",result="ok"\} (\d+)', text)
    assert ok and float(ok.group(1)) >= 1
    latency = re.search(r'f2_command_reply_latency_seconds_count\{path="in_time"\} (\d+)', text)
    assert latency and float(latency.group(1)) >= 1
    log = command_fn.log_path.read_text()
    assert OPERATOR_TOKEN not in log and AUDITOR_TOKEN not in log and COMMAND_PASSWORD not in log


def test_concurrent_requests__share_the_replicas_reply_subscription_and_get_their_own_answers(
    command_fn: FunctionEndpoint,
    provision_fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    devices = [
        connect_device(broker, certs_dir, provision(provision_fn, tmp_path), answer=result)
        for result in ("ok", "rejected", "expired")
    ]
    results: dict[int, requests.Response] = {}

    def one(n: int) -> None:
        results[n] = send(command_fn, unlock(devices[n % 3].device_id, wait_s=10))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == list(range(6))
        for n, answer in results.items():
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == ("ok", "rejected", "expired")[n % 3]
        ids = {answer.json()["command_id"] for answer in results.values()}
        assert len(ids) == 6
        for device in devices:
            sent = {json.loads(m.payload)["command_id"] for m in device.commands}
            mine = {
                answer.json()["command_id"]
                for n, answer in results.items()
                if devices[n % 3] is device
            }
            assert sent == mine
    finally:
        for device in devices:
            device.close()


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(BODIES, COMMAND_FIELDS.map(dumps)))
def test_fuzzed_bodies__get_a_named_4xx_change_no_registry_and_publish_nothing(
    command_fn: FunctionEndpoint, registry_db: str, body: bytes
) -> None:
    """Bodies of every shape, naming no registered device (so that even a well-formed command
    is refused): a 4xx naming the problem, the registry as it was, and no command row but the
    refusal's (the function publishes only a command it recorded as pending first)."""
    before = registry_state(registry_db)
    commands = audit_rows(registry_db, "status <> 'refused'")
    answer = requests.post(
        command_fn.url,
        data=body,
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"},
        timeout=15,
    )
    assert 400 <= answer.status_code < 500, (body[:200], answer.status_code, answer.text[:200])
    error = answer.json()
    assert error["error"] and error["message"]
    assert registry_state(registry_db) == before
    assert audit_rows(registry_db, "status <> 'refused'") == commands
