"""Simulated devices obeying downlink commands over the real mTLS broker: they subscribe to their
command topic, answer on the response topic with the correlation data, and report the state the
command set (a strike unlocked for 2 s reports true, then false about 2 s later)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from f2lib.contracts.commands import CommandMessage
from infra.local.launch.mosquitto import MosquittoServer
from infra.tools.simulator import Fleet, FleetConfig, FleetSnapshot, parse_mix
from tests.fixtures.provision import Connection, FunctionEndpoint, mqtt_connect, subscribe
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def running_fleet(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
    tmp_path: Path,
) -> Iterator[tuple[Fleet, dict[str, FleetSnapshot]]]:
    config = FleetConfig(
        mix=parse_mix("F2-403:1,F2-401:1", None),
        seed=4242,
        rate=0.05,  # hardly any random traffic: the command's reports stand out
        qos=1,
        cert_dir=tmp_path / "devices",
        gateway_url=provision_fn.url.removesuffix("/function/provision"),
        provision_token=SecretStr(provision_fn.token),
        mqtt_host=secure_mosquitto.host,
        mqtt_port=secure_mosquitto.tls_port or 0,
        ca_cert=certs_dir / "ca.crt",
        devices_dsn=SecretStr(registry_db),
    )
    fleet = Fleet(config)
    fleet.provision_all()
    stop = threading.Event()
    latest: dict[str, FleetSnapshot] = {}
    runner = threading.Thread(
        target=lambda: fleet.run(stop=stop, on_tick=lambda s: latest.__setitem__("s", s)),
        daemon=True,
    )
    runner.start()
    assert wait_for(lambda: "s" in latest and latest["s"].listening == 2, timeout=30), latest
    yield fleet, latest
    stop.set()
    runner.join(timeout=30)


@pytest.fixture
def internal(secure_mosquitto: MosquittoServer) -> Iterator[Connection]:
    conn = mqtt_connect(
        secure_mosquitto.host,
        secure_mosquitto.port,
        username=secure_mosquitto.username,
        password=secure_mosquitto.password,
    )
    assert conn.accepted, conn.reason
    subscribe(conn, "ctrl-resp/#")
    subscribe(conn, "cmnd/#")
    yield conn
    conn.close()


def command(
    conn: Connection, device: str, where: str, action: str, params: dict[str, Any], **kw: Any
) -> str:
    command_id = str(uuid.uuid4())
    expires = kw.get("expires_at", datetime.now(UTC) + timedelta(seconds=30))
    message = CommandMessage(
        command_id=command_id, action=action, params=params, expires_at=expires
    )
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = f"ctrl-resp/{device}"
    properties.CorrelationData = command_id.encode()
    conn.client.publish(
        f"ctrl/{device}/{where}", message.to_bytes(), qos=1, properties=properties
    ).wait_for_publish(5)
    return command_id


def reply_to(conn: Connection, command_id: str) -> dict[str, Any] | None:
    for message in list(conn.received):
        if message.topic.startswith("ctrl-resp/"):
            body = json.loads(message.payload)
            if body["command_id"] == command_id:
                assert message.properties.CorrelationData == command_id.encode()  # type: ignore[union-attr]
                return dict(body)
    return None


def statuses(conn: Connection, topic: str, since: float) -> list[tuple[float, bool]]:
    found = []
    for message in list(conn.received):
        if message.topic == topic:
            body = json.loads(message.payload)
            moment = datetime.strptime(body["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
            stamp = moment.replace(tzinfo=UTC).timestamp()
            if stamp >= since:
                found.append((stamp, bool(body["status"])))
    return found


def test_an_unlocked_strike_reports_true_then_false_after_its_duration(
    running_fleet: tuple[Fleet, dict[str, FleetSnapshot]], internal: Connection
) -> None:
    fleet, latest = running_fleet
    device = next(i.device_id for i in fleet.identities if i.model == "F2-403")
    started = time.time() - 0.5
    command_id = command(
        internal, device, "access-control-mode/J1/strike-1", "unlock", {"duration_s": 2}
    )
    assert wait_for(lambda: reply_to(internal, command_id) is not None)
    assert reply_to(internal, command_id) == {
        "command_id": command_id,
        "result": "ok",
        "detail": "unlock for 2s",
    }
    topic = f"cmnd/{device}/access-control-mode/J1/strike-1"
    assert wait_for(lambda: any(not s for _, s in statuses(internal, topic, started)), timeout=10)
    reports = statuses(internal, topic, started)
    first_true = next(t for t, s in reports if s)
    first_false = next(t for t, s in reports if not s)
    assert reports[0][1] is True and first_true < first_false
    assert 1.5 <= first_false - first_true <= 3.5, reports
    assert latest["s"].replies >= 1 and latest["s"].commands >= 1


def test_what_the_model_cannot_do_and_what_has_expired_are_answered_so(
    running_fleet: tuple[Fleet, dict[str, FleetSnapshot]], internal: Connection
) -> None:
    fleet, _ = running_fleet
    sensors = next(i.device_id for i in fleet.identities if i.model == "F2-401")
    hybrid = next(i.device_id for i in fleet.identities if i.model == "F2-403")
    no_strike = command(
        internal, sensors, "access-control-mode/J1/strike-1", "unlock", {"duration_s": 2}
    )
    stale = command(
        internal,
        hybrid,
        "alarm-mode/J2/siren-1",
        "on",
        {"duration_s": 10},
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert wait_for(lambda: reply_to(internal, no_strike) and reply_to(internal, stale))
    assert (reply_to(internal, no_strike) or {})["result"] == "rejected"
    assert (reply_to(internal, stale) or {})["result"] == "expired"
