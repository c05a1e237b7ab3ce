"""The S3 path: provision (REGISTRY_PUBLISHER=s3) → moto's S3 server → ``python -m infra.services.aclsync``
→ the broker's ACL and CRL, reloaded; tampered publications are refused."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port, port_open
from infra.local.process import ManagedProcess
from provision.pki import CertificateAuthority, crl_pem, generate_csr, generate_key, private_key_pem
from provision.publishers import MANIFEST
from provision.registry import render_acl
from tests.fixtures.mosquitto import ensure_mosquitto_installed
from tests.fixtures.provision import (
    ROOT,
    Connection,
    DeviceCredentials,
    FunctionEndpoint,
    mqtt_connect,
    serve_provision,
    subscribe,
    tls_files,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

BUCKET = "f2pipe-registry"
PREFIX = "site-a/registry"
AGENT_HTTP_PORT = free_port()
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@dataclass
class S3Server:
    url: str
    process: ManagedProcess

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="module")
def s3(runtime_root: Path) -> Iterator[S3Server]:
    """moto's standalone S3 API server as a real process on a free port."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = ManagedProcess(
        "moto",
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        runtime_root / "moto" / "moto.log",
    ).start()
    process.wait_ready(lambda: port_open(port), timeout=60)
    server = S3Server(f"http://127.0.0.1:{port}", process)
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    process.stop()


@pytest.fixture(scope="module")
def edge_dir(runtime_root: Path, certs_dir: Path) -> Path:
    """The broker host's folder: local CA and server cert, an empty ACL and CRL to start."""
    directory = runtime_root / "edge"
    directory.mkdir(mode=0o755)
    for name in ("ca.crt", "server.crt", "server.key", "crl.pem"):
        shutil.copy2(certs_dir / name, directory / name)
    (directory / "devices.acl").write_text(render_acl([]))
    return directory


@pytest.fixture(scope="module")
def edge_broker(runtime_root: Path, edge_dir: Path) -> Iterator[MosquittoServer]:
    ensure_mosquitto_installed()
    server = MosquittoServer(
        runtime_root / "mosquitto-edge", free_port(), tls_port=free_port(), tls=tls_files(edge_dir)
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aclsync(
    runtime_root: Path, s3: S3Server, edge_dir: Path, edge_broker: MosquittoServer
) -> Iterator[ManagedProcess]:
    secrets_dir = runtime_root / "aclsync-secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "s3-access-key-id").write_text(S3_KEYS["AWS_ACCESS_KEY_ID"])
    (secrets_dir / "s3-secret-access-key").write_text(S3_KEYS["AWS_SECRET_ACCESS_KEY"])
    # The names the faasd compose file and the Helm chart use (the ACLSYNC_* ones work too).
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "F2_SECRETS_DIR": str(secrets_dir),
        "S3_ENDPOINT_URL": s3.url,
        "REGISTRY_S3_BUCKET": BUCKET,
        "REGISTRY_S3_PREFIX": PREFIX,
        "ACLSYNC_TARGET_DIR": str(edge_dir),
        "ACLSYNC_PID_FILE": str(edge_broker.pid_path),
        "ACLSYNC_POLL_SECONDS": "0.3",
        "ACLSYNC_HTTP_PORT": str(AGENT_HTTP_PORT),
        "ACLSYNC_HTTP_HOST": "127.0.0.1",
    }
    process = ManagedProcess(
        "aclsync",
        [sys.executable, "-m", "infra.services.aclsync"],
        runtime_root / "aclsync.log",
        env=env,
        cwd=ROOT,
    ).start()
    process.wait_ready(lambda: "aclsync:" in process.log_path.read_text(), timeout=30)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def provision_s3(
    runtime_root: Path, certs_dir: Path, registry_db: str, s3: S3Server
) -> Iterator[FunctionEndpoint]:
    secrets_dir = certs_dir / "secrets"
    endpoint = serve_provision(
        runtime_root / "provision-s3",
        secrets={
            "provision-token": (secrets_dir / "provision-token").read_text().strip(),
            "ca-key": (secrets_dir / "ca-key").read_text(),
            "ca-crt": (secrets_dir / "ca-crt").read_text(),
            "devices-dsn": registry_db,
            "s3-access-key-id": S3_KEYS["AWS_ACCESS_KEY_ID"],
            "s3-secret-access-key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        },
        env={
            "REGISTRY_PUBLISHER": "s3",
            "REGISTRY_S3_BUCKET": BUCKET,
            "REGISTRY_S3_PREFIX": PREFIX,
            "S3_ENDPOINT_URL": s3.url,
        },
    )
    yield endpoint
    endpoint.process.stop()


def provision(fn: FunctionEndpoint, tmp: Path) -> DeviceCredentials:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] &= 0xFE
    key = generate_key()
    answer = fn.post(
        {
            "mac": raw.hex(),
            "model": "F2-401",
            "serial_number": "SN-S3",
            "csr": generate_csr(key, "x").decode(),
        }
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    (tmp / "d.crt").write_text(body["certificate"])
    (tmp / "d.key").write_bytes(private_key_pem(key))
    return DeviceCredentials(tmp / "d.crt", tmp / "d.key", body["device_id"])


def test_s3_path__device_provisioned_through_s3_connects_and_is_locked_out_after_revocation(
    provision_s3: FunctionEndpoint,
    aclsync: ManagedProcess,
    edge_broker: MosquittoServer,
    edge_dir: Path,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    device = provision(provision_s3, tmp_path)
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"{PREFIX}/{n}" for n in ("devices.acl", "crl.pem", "ca.crt", MANIFEST)} <= keys
    assert any(k.startswith(f"{PREFIX}/issued/{device.device_id}/") for k in keys)
    assert wait_for(lambda: f"user {device.device_id}" in (edge_dir / "devices.acl").read_text())

    internal = mqtt_connect(
        edge_broker.host,
        edge_broker.port,
        username=edge_broker.username,
        password=edge_broker.password,
    )
    subscribe(internal, "cmnd/#")
    conn: Connection = mqtt_connect(
        edge_broker.host, edge_broker.tls_port or 0, ca_cert=edge_dir / "ca.crt", device=device
    )
    try:
        assert conn.accepted, conn.reason
        topic = f"cmnd/{device.device_id}/sensor-mode/J1/sensor-1"
        conn.client.publish(topic, b'{"data": "00ff"}', qos=1).wait_for_publish(5)
        assert wait_for(lambda: any(m.topic == topic for m in internal.received))
    finally:
        conn.close()
        internal.close()

    pid = edge_broker.pid
    assert provision_s3.delete(device.device_id).status_code == 200
    assert wait_for(
        lambda: f"user {device.device_id}" not in (edge_dir / "devices.acl").read_text()
    )
    assert wait_for(
        lambda: (
            not mqtt_connect(
                edge_broker.host,
                edge_broker.tls_port or 0,
                ca_cert=edge_dir / "ca.crt",
                device=device,
            ).accepted
        )
    )
    assert edge_broker.pid == pid
    health = requests.get(f"http://127.0.0.1:{AGENT_HTTP_PORT}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["crl_current"] is True


def test_s3_path__carries_the_command_lines_and_the_device_hears_only_its_own_commands(
    provision_s3: FunctionEndpoint,
    aclsync: ManagedProcess,
    edge_broker: MosquittoServer,
    edge_dir: Path,
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    device = provision(provision_s3, tmp_path / "a")
    other = provision(provision_s3, tmp_path / "b")
    lines = [
        f"topic write cmnd/{device.device_id}/#",
        f"topic write ctrl-resp/{device.device_id}",
        f"topic read ctrl/{device.device_id}/#",
    ]
    assert wait_for(
        lambda: (
            all(line in (edge_dir / "devices.acl").read_text() for line in lines)
            and f"user {other.device_id}" in (edge_dir / "devices.acl").read_text()
        )
    )
    conn = mqtt_connect(
        edge_broker.host, edge_broker.tls_port or 0, ca_cert=edge_dir / "ca.crt", device=device
    )
    internal = mqtt_connect(
        edge_broker.host,
        edge_broker.port,
        username=edge_broker.username,
        password=edge_broker.password,
    )
    try:
        assert conn.accepted, conn.reason
        subscribe(conn, "ctrl/#")
        for target in (other.device_id, device.device_id):  # the device's own comes last
            topic = f"ctrl/{target}/sensor-mode/J1/sensor-1"
            internal.client.publish(topic, b"{}", qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(conn.received) >= 1)
        assert [m.topic.split("/")[1] for m in conn.received] == [device.device_id]
    finally:
        conn.close()
        internal.close()


def publish_raw(s3: S3Server, files: dict[str, bytes], *, version: int) -> None:
    client = s3.client()
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=data)
    manifest = {
        "version": version,
        "generated_at": "2030-01-01T00:00:00+00:00",
        "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
    }
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{MANIFEST}", Body=json.dumps(manifest).encode())


@pytest.mark.parametrize("tamper", ["acl_grants_wildcard", "crl_from_other_ca", "foreign_ca"])
def test_aclsync__refuses_a_tampered_publication_and_keeps_the_installed_files(
    tamper: str,
    aclsync: ManagedProcess,
    edge_dir: Path,
    s3: S3Server,
    certs_dir: Path,
    test_ca: CertificateAuthority,
) -> None:
    before = {n: (edge_dir / n).read_bytes() for n in ("devices.acl", "crl.pem")}
    files = {
        "ca.crt": (certs_dir / "ca.crt").read_bytes(),
        "crl.pem": crl_pem(test_ca.build_crl([])),
        "registry.json": b"{}",
        "devices.acl": render_acl(["f2-0a1b2c3d4e5f"]).encode(),
    }
    rogue = CertificateAuthority.generate("rogue")
    if tamper == "acl_grants_wildcard":
        files["devices.acl"] = b"user f2-0a1b2c3d4e5f\ntopic readwrite #\n"
    elif tamper == "crl_from_other_ca":
        files["crl.pem"] = crl_pem(rogue.build_crl([]))
    else:
        files["ca.crt"] = rogue.certificate_pem
    log_size = len(aclsync.log_path.read_bytes())
    publish_raw(s3, files, version=secrets.randbelow(10**12) + 1)
    assert wait_for(lambda: b"registry not installed" in aclsync.log_path.read_bytes()[log_size:])
    assert {n: (edge_dir / n).read_bytes() for n in before} == before
    health = requests.get(f"http://127.0.0.1:{AGENT_HTTP_PORT}/healthz", timeout=5)
    assert health.status_code == 503 and health.json()["error"]
