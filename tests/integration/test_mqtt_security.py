"""Device security against the real broker: mTLS identity, per-device ACL, rejected certificates,
revocation without restart (provisioned and revoked through the provision function over HTTP)."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest

from infra.local.launch.mosquitto import MosquittoServer
from provision.pki import CertificateAuthority, generate_csr, generate_key, private_key_pem
from tests.fixtures.provision import (
    Connection,
    DeviceCredentials,
    FunctionEndpoint,
    mqtt_connect,
    subscribe,
    write_device,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def random_mac() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] &= 0xFE  # unicast
    return raw.hex()


def provision(fn: FunctionEndpoint, tmp: Path, model: str = "F2-212") -> DeviceCredentials:
    mac = random_mac()
    key = generate_key()
    answer = fn.post(
        {
            "mac": mac,
            "model": model,
            "serial_number": f"SN-{mac}",
            "csr": generate_csr(key, "ignored").decode(),
        }
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    device = tmp / body["device_id"]
    device.mkdir()
    (device / "device.crt").write_text(body["certificate"])
    (device / "device.key").write_bytes(private_key_pem(key))
    return DeviceCredentials(device / "device.crt", device / "device.key", body["device_id"])


def device_connect(
    broker: MosquittoServer,
    certs_dir: Path,
    device: DeviceCredentials | None,
    port: int | None = None,
    transport: str = "tcp",
) -> Connection:
    return mqtt_connect(
        broker.host,
        port or broker.tls_port or 0,
        ca_cert=certs_dir / "ca.crt",
        device=device,
        transport=transport,
    )


@pytest.fixture
def internal(secure_mosquitto: MosquittoServer) -> Connection:
    conn = mqtt_connect(
        secure_mosquitto.host,
        secure_mosquitto.port,
        username=secure_mosquitto.username,
        password=secure_mosquitto.password,
    )
    assert conn.accepted, conn.reason
    subscribe(conn, "cmnd/#")
    yield conn
    conn.close()


def test_provisioned_device__reaches_internal_subscriber_only_on_its_own_topics(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    internal: Connection,
    tmp_path: Path,
) -> None:
    device = provision(provision_fn, tmp_path)
    other = provision(provision_fn, tmp_path)
    conn = device_connect(secure_mosquitto, certs_dir, device)
    assert conn.accepted, conn.reason
    try:
        foreign = f"cmnd/{other.device_id}/access-control-mode/J1/strike-1"
        own = f"cmnd/{device.device_id}/access-control-mode/J1/strike-1"
        conn.client.publish(foreign, b'{"status": true}', qos=1).wait_for_publish(5)
        conn.client.publish("cmnd/elsewhere", b"{}", qos=1).wait_for_publish(5)
        conn.client.publish(own, b'{"status": true}', qos=1).wait_for_publish(5)
        assert wait_for(lambda: any(m.topic == own for m in internal.received))
        topics = {m.topic for m in internal.received}
        assert foreign not in topics and "cmnd/elsewhere" not in topics
    finally:
        conn.close()


def test_connect__without_client_certificate_is_rejected(
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
) -> None:
    conn = device_connect(secure_mosquitto, certs_dir, None)
    assert not conn.accepted


def test_connect__with_certificate_from_another_ca_is_rejected(
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    rogue = CertificateAuthority.generate("rogue CA")
    issued = rogue.issue_client_certificate(f"f2-{random_mac()}")
    device = write_device(tmp_path, "rogue", issued)
    conn = device_connect(secure_mosquitto, certs_dir, device)
    assert not conn.accepted


def test_connect__with_expired_certificate_is_rejected(
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    test_ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = test_ca.issue_client_certificate(
        f"f2-{random_mac()}",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    conn = device_connect(secure_mosquitto, certs_dir, write_device(tmp_path, "old", issued))
    assert not conn.accepted


def test_connect__with_revoked_certificate_is_rejected_without_broker_restart(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    device = provision(provision_fn, tmp_path)
    first = device_connect(secure_mosquitto, certs_dir, device)
    assert first.accepted, first.reason
    first.close()
    pid = secure_mosquitto.pid
    answer = provision_fn.delete(device.device_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "revoked"
    assert wait_for(lambda: not device_connect(secure_mosquitto, certs_dir, device).accepted)
    assert secure_mosquitto.pid == pid and secure_mosquitto.running()
    assert f"user {device.device_id}" not in (certs_dir / "devices.acl").read_text()


def test_reprovisioning__rotates_the_certificate_and_revokes_the_old_one(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    old = provision(provision_fn, tmp_path)
    mac = old.device_id.removeprefix("f2-")
    key = generate_key()
    answer = provision_fn.post(
        {
            "mac": mac,
            "model": "F2-214",
            "serial_number": "SN-rotated",
            "csr": generate_csr(key, "x").decode(),
        }
    )
    assert answer.status_code == 201, answer.text
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    (new_dir / "d.crt").write_text(answer.json()["certificate"])
    (new_dir / "d.key").write_bytes(private_key_pem(key))
    new = DeviceCredentials(new_dir / "d.crt", new_dir / "d.key", old.device_id)
    accepted = device_connect(secure_mosquitto, certs_dir, new)
    assert accepted.accepted, accepted.reason
    accepted.close()
    assert not device_connect(secure_mosquitto, certs_dir, old).accepted


def test_websockets_listener__accepts_a_device_and_gates_it_by_the_acl(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    internal: Connection,
    tmp_path: Path,
) -> None:
    device = provision(provision_fn, tmp_path)
    conn = device_connect(
        secure_mosquitto, certs_dir, device, port=secure_mosquitto.ws_port, transport="websockets"
    )
    assert conn.accepted, conn.reason
    try:
        own = f"cmnd/{device.device_id}/alarm-mode/J2/siren-1"
        conn.client.publish(own, b'{"status": false}', qos=1).wait_for_publish(5)
        assert wait_for(lambda: any(m.topic == own for m in internal.received))
    finally:
        conn.close()


def test_websockets_listener__rejects_a_client_without_certificate(
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
) -> None:
    conn = device_connect(
        secure_mosquitto, certs_dir, None, port=secure_mosquitto.ws_port, transport="websockets"
    )
    assert not conn.accepted


def test_websockets_listener__revoked_device_cannot_publish_even_without_crl_check(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    internal: Connection,
    tmp_path: Path,
) -> None:
    """Mosquitto 2.0.11 does no CRL check on websockets (upstream 3042): the ACL is the guard."""
    device = provision(provision_fn, tmp_path)
    assert provision_fn.delete(device.device_id).status_code == 200
    conn = device_connect(
        secure_mosquitto, certs_dir, device, port=secure_mosquitto.ws_port, transport="websockets"
    )
    if not conn.accepted:
        return  # a broker that checks the CRL here refuses outright, which is as good
    try:
        own = f"cmnd/{device.device_id}/alarm-mode/J2/siren-1"
        conn.client.publish(own, b'{"status": true}', qos=1).wait_for_publish(5)
        marker = f"cmnd/f2-000000000000/probe/{secrets.token_hex(4)}"
        probe = mqtt_connect(
            secure_mosquitto.host,
            secure_mosquitto.port,
            username=secure_mosquitto.username,
            password=secure_mosquitto.password,
        )
        probe.client.publish(marker, b"{}", qos=1).wait_for_publish(5)
        probe.close()
        assert wait_for(lambda: any(m.topic == marker for m in internal.received))
        assert own not in {m.topic for m in internal.received}
    finally:
        conn.close()
