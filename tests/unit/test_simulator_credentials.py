"""Device credentials: CSR provisioning over HTTP, storage, reuse and renewal.

The provisioning function is replaced by a small HTTP server speaking its contract
(``POST /function/provision`` with a bearer token -> 201 with the certificate), signing with a
real CA from provision.pki; the integration tests use the real function.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from f2lib.errors import SimulatorError
from infra.tools.simulator.credentials import (
    CredentialStore,
    DeviceProvisioner,
    ProvisioningClient,
)
from infra.tools.simulator.identity import fleet_identities
from provision.pki import CertificateAuthority

TOKEN = "t0ken-for-tests"


class FakeProvisionFunction:
    """The provisioning contract over a real CA; records the requests it answered."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []  # statuses to answer before succeeding
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/function/provision":
                    return self._send(404, {"error": "not_found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(
                        401, {"error": "invalid_token", "message": "the bearer token is not valid"}
                    )
                if fake.fail_next:
                    return self._send(fake.fail_next.pop(0), {"error": "unavailable"})
                fake.requests.append(body)
                device_id = "f2-" + body["mac"].replace(":", "")
                issued = fake.ca.sign_csr(body["csr"].encode(), device_id)
                return self._send(
                    201,
                    {
                        "device_id": device_id,
                        "certificate": issued.certificate_pem.decode(),
                        "ca_certificate": fake.ca.certificate_pem.decode(),
                        "not_after": issued.not_after.isoformat(),
                        "serial": issued.serial,
                    },
                )

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate("simulator test CA")


@pytest.fixture
def function(ca: CertificateAuthority) -> Iterator[FakeProvisionFunction]:
    fake = FakeProvisionFunction(ca)
    yield fake
    fake.server.shutdown()


def _provisioner(
    tmp_path: Path,
    fake: FakeProvisionFunction,
    ca_path: Path | None = None,
    token: str = TOKEN,
    **kw: Any,
) -> DeviceProvisioner:
    client = ProvisioningClient(fake.url, SecretStr(token), attempts=3, backoff=0.01)
    return DeviceProvisioner(CredentialStore(tmp_path / "devices", ca_path, **kw), client)


IDENTITY = fleet_identities({"F2-403": 1}, seed=5)[0]


def test_first_start_provisions_with_a_csr_and_stores_a_private_key(
    tmp_path: Path, function: FakeProvisionFunction
) -> None:
    creds = _provisioner(tmp_path, function).ensure(IDENTITY)

    assert creds.provisioned
    (request,) = function.requests
    assert request["mac"] == IDENTITY.mac_colons and request["mac"].startswith("02:f2:")
    assert request["model"] == "F2-403"
    assert request["serial_number"] == IDENTITY.serial_number
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == IDENTITY.device_id
    assert "PRIVATE KEY" not in json.dumps(request)
    key = serialization.load_pem_private_key(creds.key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(creds.cert_path.read_bytes())
    assert cert.public_key() == key.public_key()
    assert stat.S_IMODE(creds.key_path.stat().st_mode) == 0o600
    assert creds.directory == tmp_path / "devices" / IDENTITY.device_id
    assert json.loads((creds.directory / "device.json").read_text())["model"] == "F2-403"


def test_later_starts_reuse_the_stored_certificate(
    tmp_path: Path, function: FakeProvisionFunction, ca: CertificateAuthority
) -> None:
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(ca.certificate_pem)
    first = _provisioner(tmp_path, function, ca_path).ensure(IDENTITY)
    again = _provisioner(tmp_path, function, ca_path).ensure(IDENTITY)

    assert not again.provisioned
    assert again.serial == first.serial
    assert len(function.requests) == 1


def test_a_certificate_from_another_ca_is_replaced(
    tmp_path: Path, function: FakeProvisionFunction
) -> None:
    _provisioner(tmp_path, function).ensure(IDENTITY)
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(CertificateAuthority.generate("another CA").certificate_pem)

    renewed = _provisioner(tmp_path, function, other_ca).ensure(IDENTITY)

    assert renewed.provisioned
    assert len(function.requests) == 2


def test_a_certificate_expiring_within_a_day_is_renewed(
    tmp_path: Path, function: FakeProvisionFunction
) -> None:
    first = _provisioner(tmp_path, function).ensure(IDENTITY)
    later = first.not_after - dt.timedelta(hours=12)

    renewed = _provisioner(tmp_path, function, clock=lambda: later).ensure(IDENTITY)

    assert renewed.provisioned and renewed.serial != first.serial


def test_a_wrong_token_fails_with_the_functions_reason(
    tmp_path: Path, function: FakeProvisionFunction
) -> None:
    with pytest.raises(SimulatorError, match=r"refused: HTTP 401 invalid_token"):
        _provisioner(tmp_path, function, token="wrong").ensure(IDENTITY)
    assert not (tmp_path / "devices" / IDENTITY.device_id / "device.key").exists()


def test_a_busy_gateway_is_retried(tmp_path: Path, function: FakeProvisionFunction) -> None:
    function.fail_next = [503, 502]
    creds = _provisioner(tmp_path, function).ensure(IDENTITY)
    assert creds.provisioned and len(function.requests) == 1


@pytest.mark.parametrize(("backoff", "delays"), [(0.5, [1.0, 2.0, 4.0]), (2.0, [4.0, 5.0, 5.0])])
def test_retries_wait_backoff_times_two_to_the_attempt_capped_at_five_seconds(
    tmp_path: Path, function: FakeProvisionFunction, backoff: float, delays: list[float]
) -> None:
    function.fail_next = [503, 502, 429]
    slept: list[float] = []
    client = ProvisioningClient(
        function.url, SecretStr(TOKEN), attempts=4, backoff=backoff, sleep=slept.append
    )
    creds = DeviceProvisioner(CredentialStore(tmp_path), client).ensure(IDENTITY)
    assert creds.provisioned
    assert slept == delays


def test_an_unreachable_gateway_fails_clearly(tmp_path: Path) -> None:
    client = ProvisioningClient("http://127.0.0.1:9", SecretStr(TOKEN), attempts=1)
    provisioner = DeviceProvisioner(CredentialStore(tmp_path), client)
    with pytest.raises(SimulatorError, match=r"cannot reach http://127.0.0.1:9/function/provision"):
        provisioner.ensure(IDENTITY)


def test_without_a_gateway_a_device_without_certificate_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match="no gateway to provision it"):
        DeviceProvisioner(CredentialStore(tmp_path), None).ensure(IDENTITY)
