"""A simulated device's identity on disk, and its provisioning through the gateway with a CSR.

Each device keeps ``<cert_dir>/<device_id>/device.key`` (0600, generated here, never sent),
``device.crt``, ``ca.crt`` and ``device.json``. Stored credentials are reused while the
certificate matches the key, is valid for another day, and was issued by the CA in use; a
device without usable credentials provisions itself again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from f2lib.backoff import Backoff
from f2lib.errors import GatewayError, SimulatorError
from infra.services.kit.openfaas import Invocation, OpenFaaSClient, TimeoutConfig
from infra.tools.simulator.identity import DeviceIdentity

logger = logging.getLogger(__name__)

KEY_FILE = "device.key"
CERT_FILE = "device.crt"
CA_FILE = "ca.crt"
META_FILE = "device.json"
RENEW_BEFORE = dt.timedelta(days=1)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_MAX_DELAY_S = 5.0


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """Where a device's key and certificate are, and what the certificate says."""

    device_id: str
    directory: Path
    serial: str
    not_after: dt.datetime
    provisioned: bool  # True when issued during this run, False when reused

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (a key is never world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class CredentialStore:
    """The device directories under ``cert_dir``."""

    def __init__(
        self,
        cert_dir: Path,
        ca_cert: Path | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.cert_dir = cert_dir
        self.ca_cert = ca_cert
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def directory(self, device_id: str) -> Path:
        return self.cert_dir / device_id

    def load(self, device_id: str) -> DeviceCredentials | None:
        """The stored credentials when they are usable now, else None (with the reason logged)."""
        folder = self.directory(device_id)
        try:
            key_pem = (folder / KEY_FILE).read_bytes()
            cert = x509.load_pem_x509_certificate((folder / CERT_FILE).read_bytes())
            key = serialization.load_pem_private_key(key_pem, password=None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning(
                "device %s: stored credentials unreadable (%s); provisioning again",
                device_id,
                exc.__class__.__name__,
            )
            return None
        reason = self._unusable(device_id, cert, key)
        if reason:
            logger.info("device %s: stored certificate %s; provisioning again", device_id, reason)
            return None
        return DeviceCredentials(
            device_id,
            folder,
            format(cert.serial_number, "x"),
            cert.not_valid_after_utc,
            provisioned=False,
        )

    def _unusable(self, device_id: str, cert: x509.Certificate, key: Any) -> str | None:
        public = cert.public_key()
        if (
            not isinstance(key, ec.EllipticCurvePrivateKey)
            or not isinstance(public, ec.EllipticCurvePublicKey)
            or key.public_key() != public
        ):
            return "does not match the stored key"
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or names[0].value != device_id:
            return "names another device"
        if cert.not_valid_after_utc - RENEW_BEFORE < self.clock():
            return "expires within a day"
        if self.ca_cert is not None:
            try:
                ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
                cert.verify_directly_issued_by(ca)
            except (OSError, ValueError, TypeError, InvalidSignature):
                return f"was not issued by the CA in {self.ca_cert}"
        return None

    def save(
        self,
        device_id: str,
        key: ec.EllipticCurvePrivateKey,
        answer: dict[str, Any],
        identity: DeviceIdentity,
    ) -> DeviceCredentials:
        folder = self.directory(device_id)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_pem = str(answer["certificate"]).encode()
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.public_key() != key.public_key():
            raise SimulatorError(f"device {device_id}: the issued certificate is not for its key")
        _write(folder / KEY_FILE, key_pem, 0o600)
        _write(folder / CERT_FILE, cert_pem, 0o644)
        if answer.get("ca_certificate"):
            _write(folder / CA_FILE, str(answer["ca_certificate"]).encode(), 0o644)
        meta = {
            "device_id": device_id,
            "mac": identity.mac_colons,
            "model": identity.model,
            "serial_number": identity.serial_number,
            "certificate_serial": answer.get("serial"),
            "not_after": answer.get("not_after"),
        }
        _write(folder / META_FILE, (json.dumps(meta, indent=2) + "\n").encode(), 0o644)
        return DeviceCredentials(
            device_id,
            folder,
            format(cert.serial_number, "x"),
            cert.not_valid_after_utc,
            provisioned=True,
        )


class ProvisioningClient:
    """``POST <gateway>/function/provision`` with the bearer token and the device's CSR.

    No answer, 429, 502, 503 and 504 are tried again, up to ``attempts`` calls in all, after
    ``backoff`` x 2, x 4, ... seconds (at most 5 s); any other refusal fails at once.
    """

    def __init__(
        self,
        gateway_url: str,
        token: SecretStr,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = gateway_url.rstrip("/") + "/function/provision"
        self._gateway = OpenFaaSClient(
            gateway_url, session=session, timeouts=TimeoutConfig(connect_s=timeout)
        )
        self._token = token
        self.timeout = timeout
        self.attempts = attempts
        self._retry = Backoff(base_s=2 * backoff, cap_s=RETRY_MAX_DELAY_S, jitter=0.0)
        self._sleep = sleep

    def provision(self, identity: DeviceIdentity, csr_pem: str) -> dict[str, Any]:
        body = {
            "mac": identity.mac_colons,
            "model": identity.model,
            "serial_number": identity.serial_number,
            "csr": csr_pem,
        }
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        payload = json.dumps(body).encode()
        device_id = identity.device_id
        for attempt in range(1, self.attempts + 1):
            try:
                answer = self._gateway.invoke("provision", payload, headers, timeout_s=self.timeout)
            except GatewayError as exc:
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                failure = f"cannot reach {self.url}: {cause.__class__.__name__}"
            else:
                if answer.status == 201:
                    return self._answer(answer, device_id)
                failure = f"HTTP {answer.status} {_error_text(answer)}"
                if answer.status not in RETRY_STATUSES:
                    raise SimulatorError(f"provisioning {device_id} refused: {failure}")
            if attempt < self.attempts:
                logger.warning("provisioning %s failed (%s); retry %d", device_id, failure, attempt)
                self._sleep(self._retry.delay(attempt))
        raise SimulatorError(f"provisioning {device_id} failed: {failure}")

    @staticmethod
    def _answer(answer: Invocation, device_id: str) -> dict[str, Any]:
        try:
            parsed = answer.json()
        except ValueError:
            raise SimulatorError(f"provisioning {device_id}: the answer is not JSON") from None
        if not isinstance(parsed, dict) or not parsed.get("certificate"):
            raise SimulatorError(f"provisioning {device_id}: the answer has no certificate")
        if parsed.get("device_id") not in (None, device_id):
            raise SimulatorError(
                f"provisioning {device_id}: the answer is for {parsed.get('device_id')}"
            )
        return parsed


def _error_text(answer: Invocation) -> str:
    try:
        data = answer.json()
    except ValueError:
        return answer.body[:200].strip()
    if isinstance(data, dict):
        return f"{data.get('error', '')}: {data.get('message', '')}".strip(": ")
    return str(data)[:200]


class DeviceProvisioner:
    """Reuses a device's stored credentials, or provisions it with a fresh key and CSR."""

    def __init__(self, store: CredentialStore, client: ProvisioningClient | None) -> None:
        self.store = store
        self.client = client

    def ensure(self, identity: DeviceIdentity, *, force: bool = False) -> DeviceCredentials:
        device_id = identity.device_id
        if not force:
            stored = self.store.load(device_id)
            if stored is not None:
                return stored
        if self.client is None:
            raise SimulatorError(
                f"device {device_id} has no usable certificate and no gateway to provision it "
                "(set GATEWAY_URL and F2_SECRETS_DIR/provision-token: make up; "
                'eval "$(make -s env)")'
            )
        key = generate_key()  # generated here; only the CSR leaves the device
        answer = self.client.provision(identity, make_csr(key, device_id))
        credentials = self.store.save(device_id, key, answer, identity)
        logger.info(
            "provisioned %s (%s) certificate serial=%s",
            device_id,
            identity.model,
            credentials.serial,
        )
        return credentials
