"""The provision function over HTTP (template index.py): refusals leave everything unchanged,
concurrent calls lose nothing, the Device row links the model's template, no secret leaks."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from provision.pki import generate_csr, generate_key, load_private_key
from tests.fixtures.provision import DeviceCredentials, FunctionEndpoint, mqtt_connect

pytestmark = pytest.mark.integration


def random_mac() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] &= 0xFE
    return raw.hex()


def valid_body(**overrides: Any) -> dict[str, Any]:
    mac = random_mac()
    body = {
        "mac": mac,
        "model": "F2-215",
        "serial_number": f"SN-{mac}",
        "csr": generate_csr(generate_key(), "any").decode(),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def tampered_csr() -> str:
    csr = x509.load_pem_x509_csr(generate_csr(generate_key(), "x"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der)).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )


def rsa_csr() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def raw_post(
    fn: FunctionEndpoint,
    data: bytes,
    *,
    token: str | None = None,
    content_type: str = "application/json",
    auth: str | None = None,
) -> requests.Response:
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(fn.url, data=data, headers=headers, timeout=30)


Case = Callable[[FunctionEndpoint], requests.Response]

BAD_REQUESTS: dict[str, tuple[Case, int, str]] = {
    "missing token": (
        lambda fn: raw_post(fn, json.dumps(valid_body()).encode()),
        401,
        "missing_token",
    ),
    "wrong token": (
        lambda fn: raw_post(fn, json.dumps(valid_body()).encode(), token="not-the-token"),
        401,
        "invalid_token",
    ),
    "basic instead of bearer": (
        lambda fn: raw_post(fn, json.dumps(valid_body()).encode(), auth="Basic YWRtaW46eA=="),
        401,
        "invalid_authorization",
    ),
    "malformed mac": (lambda fn: fn.post(valid_body(mac="zz:11:22:33:44:55")), 400, "invalid_mac"),
    "short mac": (lambda fn: fn.post(valid_body(mac="aabbccddee")), 400, "invalid_mac"),
    "mixed separators": (
        lambda fn: fn.post(valid_body(mac="aa:bb-cc:dd:ee:f0")),
        400,
        "invalid_mac",
    ),
    "multicast mac": (lambda fn: fn.post(valid_body(mac="01:00:5e:00:00:01")), 400, "invalid_mac"),
    "unknown model": (lambda fn: fn.post(valid_body(model="F2-999")), 400, "unknown_model"),
    "missing serial number": (
        lambda fn: fn.post(valid_body(serial_number=None)),
        400,
        "missing_field",
    ),
    "bad serial number": (
        lambda fn: fn.post(valid_body(serial_number="SN 1; DROP TABLE device")),
        400,
        "invalid_serial_number",
    ),
    "mac not a string": (lambda fn: fn.post(valid_body(mac=123456)), 400, "invalid_field"),
    "unknown field": (lambda fn: fn.post(valid_body(role="admin")), 400, "unknown_field"),
    "csr not pem": (lambda fn: fn.post(valid_body(csr="hello")), 400, "invalid_csr"),
    "csr garbage pem": (
        lambda fn: fn.post(
            valid_body(
                csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            )
        ),
        400,
        "invalid_csr",
    ),
    "csr mis-signed": (lambda fn: fn.post(valid_body(csr=tampered_csr())), 400, "invalid_csr"),
    "csr rsa key": (lambda fn: fn.post(valid_body(csr=rsa_csr())), 400, "invalid_csr"),
    "oversized body": (
        lambda fn: fn.post(valid_body(serial_number="S" * 40_000)),
        413,
        "body_too_large",
    ),
    "wrong content type": (
        lambda fn: raw_post(
            fn, json.dumps(valid_body()).encode(), token=fn.token, content_type="text/plain"
        ),
        415,
        "unsupported_media_type",
    ),
    "invalid json": (lambda fn: raw_post(fn, b'{"mac": ', token=fn.token), 400, "invalid_json"),
    "json array": (lambda fn: fn.post([valid_body()]), 400, "invalid_body"),
    "get on collection": (
        lambda fn: requests.get(
            fn.url, headers={"Authorization": f"Bearer {fn.token}"}, timeout=30
        ),
        405,
        "method_not_allowed",
    ),
    "revoke unknown device": (lambda fn: fn.delete(f"f2-{random_mac()}"), 404, "unknown_device"),
    "revoke malformed id": (lambda fn: fn.delete("f2-nothex"), 400, "invalid_mac"),
    "revoke with wrong token": (
        lambda fn: fn.delete("f2-0a1b2c3d4e5f", token="nope"),
        401,
        "invalid_token",
    ),
}


def registry_state(dsn: str, certs_dir: Path) -> tuple[Any, ...]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT device_id, status, certificate_serial, updated_at FROM device"
                " ORDER BY device_id"
            )
            devices = cur.fetchall()
            cur.execute("SELECT serial, revoked_at FROM device_certificate ORDER BY serial")
            certificates = cur.fetchall()
    finally:
        conn.close()
    return (
        devices,
        certificates,
        (certs_dir / "devices.acl").read_bytes(),
        (certs_dir / "crl.pem").read_bytes(),
    )


def test_bad_requests__are_at_least_fifteen_distinct_cases() -> None:
    assert len(BAD_REQUESTS) >= 15


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request__gets_named_4xx_json_and_changes_nothing(
    case: str,
    provision_fn: FunctionEndpoint,
    registry_db: str,
    certs_dir: Path,
) -> None:
    call, status, code = BAD_REQUESTS[case]
    before = registry_state(registry_db, certs_dir)
    answer = call(provision_fn)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["error"] == code and body["message"]
    assert provision_fn.token not in answer.text and "PRIVATE KEY" not in answer.text
    assert registry_state(registry_db, certs_dir) == before


def test_provision__records_device_row_linked_to_model_template(
    provision_fn: FunctionEndpoint,
    registry_db: str,
    certs_dir: Path,
) -> None:
    body = valid_body(model="F2-403")
    answer = provision_fn.post(body)
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert set(result) >= {"device_id", "certificate", "ca_certificate", "not_after", "serial"}
    assert "private_key" not in result
    cert = x509.load_pem_x509_certificate(result["certificate"].encode())
    conn = psycopg2.connect(registry_db)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT d.model, d.serial_number, d.certificate_serial, d.certificate_fingerprint,"
                " d.certificate_not_after, d.status, t.model, t.is_default FROM device d"
                " JOIN device_template t USING (template_id) WHERE d.device_id = %s",
                (result["device_id"],),
            )
            row = cur.fetchone()
            cur.execute(
                "SELECT count(*) FROM device_parameters WHERE device_id = %s",
                (result["device_id"],),
            )
            parameters = cur.fetchone()[0]
    finally:
        conn.close()
    assert row is not None
    model, serial_number, cert_serial, fingerprint, not_after, status, t_model, default = row
    assert (model, serial_number, status, t_model, default) == (
        "F2-403",
        body["serial_number"],
        "active",
        "F2-403",
        True,
    )
    assert cert_serial == result["serial"] == format(cert.serial_number, "x")
    assert fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert not_after == cert.not_valid_after_utc
    assert parameters > 0, "the device must decode at once through device_parameters"
    acl = (certs_dir / "devices.acl").read_text()
    assert f"user {result['device_id']}\ntopic write cmnd/{result['device_id']}/#" in acl
    archived = certs_dir / "issued" / result["device_id"] / f"{result['serial']}.crt"
    assert archived.read_text() == result["certificate"]


def test_provision__without_csr_returns_a_matching_private_key_once(
    provision_fn: FunctionEndpoint,
) -> None:
    answer = provision_fn.post(valid_body(csr=None, mac=f"02:{random_mac()[2:4]}:00:00:00:01"))
    assert answer.status_code == 201, answer.text
    result = answer.json()
    key = load_private_key(result["private_key"].encode())
    cert = x509.load_pem_x509_certificate(result["certificate"].encode())
    assert cert.public_key() == key.public_key()


def test_provision__twenty_concurrent_calls_all_land_in_the_acl(
    provision_fn: FunctionEndpoint,
    certs_dir: Path,
) -> None:
    bodies = [valid_body(csr=None) if i % 2 else valid_body() for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(provision_fn.post, bodies))
    assert [a.status_code for a in answers] == [201] * 20, [
        a.text for a in answers if a.status_code != 201
    ]
    acl = (certs_dir / "devices.acl").read_text()
    for answer in answers:
        device_id = answer.json()["device_id"]
        assert f"user {device_id}\ntopic write cmnd/{device_id}/#" in acl


def test_crl_refresh__re_signs_only_when_due_or_forced(
    provision_fn: FunctionEndpoint,
    certs_dir: Path,
) -> None:
    headers = {"Authorization": f"Bearer {provision_fn.token}"}
    before = (certs_dir / "crl.pem").read_bytes()
    lazy = requests.post(provision_fn.url + "/crl", headers=headers, timeout=30)
    assert lazy.status_code == 200 and lazy.json() == {"resigned": False}
    assert (certs_dir / "crl.pem").read_bytes() == before
    forced = requests.post(provision_fn.url + "/crl?force=true", headers=headers, timeout=30)
    assert forced.status_code == 200 and forced.json() == {"resigned": True}
    number = (
        x509.load_pem_x509_crl((certs_dir / "crl.pem").read_bytes())
        .extensions.get_extension_for_class(x509.CRLNumber)
        .value.crl_number
    )
    old = (
        x509.load_pem_x509_crl(before)
        .extensions.get_extension_for_class(x509.CRLNumber)
        .value.crl_number
    )
    assert number > old


def test_logs__hold_no_token_and_no_private_key(provision_fn: FunctionEndpoint) -> None:
    provision_fn.post(valid_body(csr=None))
    raw_post(provision_fn, b"{}", token="guess-" + provision_fn.token[:6])
    log = provision_fn.log_path.read_text()
    assert "provisioned" in log
    assert provision_fn.token not in log
    assert "PRIVATE KEY" not in log


def test_register_cli__writes_device_folder_and_the_device_connects(
    provision_fn: FunctionEndpoint,
    secure_mosquitto: Any,
    certs_dir: Path,
    tmp_path: Path,
) -> None:
    mac = random_mac()
    token_file = tmp_path / "provision-token"
    token_file.write_text(provision_fn.token + "\n")
    env = dict(os.environ)
    env.pop("PROVISION_TOKEN", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "certs",
            "register",
            ":".join(mac[i : i + 2] for i in range(0, 12, 2)),
            "--model",
            "F2-301",
            "--serial-number",
            "SN-CLI-1",
            "--url",
            provision_fn.url,
            "--token-file",
            str(token_file),
            "--out",
            str(tmp_path),
            "--dir",
            str(certs_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / f"f2-{mac}"
    assert (folder / "device.key").stat().st_mode & 0o777 == 0o600
    assert json.loads((folder / "device.json").read_text())["device_id"] == f"f2-{mac}"
    assert provision_fn.token not in done.stdout + done.stderr
    device = DeviceCredentials(folder / "device.crt", folder / "device.key", f"f2-{mac}")
    conn = mqtt_connect(
        secure_mosquitto.host, secure_mosquitto.tls_port, ca_cert=folder / "ca.crt", device=device
    )
    assert conn.accepted, conn.reason
    conn.close()
