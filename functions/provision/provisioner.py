"""Provisioning requests: authenticate, validate, issue, record, publish; revoke; refresh the CRL.

Routes (paths relative to ``/function/provision``):

* ``POST /`` with ``{"mac", "model", "serial_number", "csr"?}`` → 201 with the certificate
* ``GET /<device_id>`` → 200 with the device's registry record
* ``DELETE /<device_id>`` → 200, the device revoked (CRL, ACL, broker reload)
* ``POST /crl`` (``?force=true``) → 200, the CRL re-signed when due

Every answer is JSON; errors are ``{"error": <code>, "message": <text>}`` and never carry a
token or a key. Every check runs before anything is written.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from f2lib.errors import JSON_DECODE_ERRORS, CertificateError, ProvisioningError
from f2lib.httpfn import Request, Response
from f2lib.metrics import function_metrics

from .pki import CertificateAuthority
from .registry import (
    DeviceRegistry,
    RegistrySync,
    check_model,
    check_serial_number,
    issued_name,
    normalize_mac,
    parse_device_id,
)

logger = logging.getLogger(__name__)

FIELDS = frozenset({"mac", "model", "serial_number", "csr"})
REQUIRED = ("mac", "model", "serial_number")
MAX_CSR_CHARS = 8192
PATH_PREFIX = "/function/provision"


@dataclass(frozen=True)
class ProvisionLimits:
    """Request limits with their named defaults."""

    max_body_bytes: int = 16 * 1024
    cert_validity_days: int = 365


def _refuse(status: int, code: str, message: str) -> ProvisioningError:
    return ProvisioningError(message, status=status, code=code)


def parse_provision_body(body: bytes) -> dict[str, str]:
    """The validated JSON body of a provisioning request (``csr`` only when present)."""
    try:
        data = json.loads(body)
    except JSON_DECODE_ERRORS as exc:
        raise _refuse(400, "invalid_json", "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _refuse(400, "invalid_body", "body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise _refuse(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    for name in REQUIRED:
        if name not in data:
            raise _refuse(400, "missing_field", f"field {name!r} is required")
    for name in FIELDS & set(data):
        if not isinstance(data[name], str) or (name != "csr" and not data[name]):
            raise _refuse(400, "invalid_field", f"field {name!r} must be a non-empty string")
    fields = {
        "mac": normalize_mac(data["mac"]),
        "model": check_model(data["model"]),
        "serial_number": check_serial_number(data["serial_number"]),
    }
    if "csr" in data:
        if (
            len(data["csr"]) > MAX_CSR_CHARS
            or "-----BEGIN CERTIFICATE REQUEST-----" not in data["csr"]
        ):
            raise _refuse(400, "invalid_csr", "csr must be one PEM certificate request")
        fields["csr"] = data["csr"]
    return fields


class Provisioner:
    """The provisioning API over a CA, the device registry and the registry publisher."""

    def __init__(
        self,
        *,
        token: str,
        ca: CertificateAuthority,
        registry: DeviceRegistry,
        sync: RegistrySync,
        limits: ProvisionLimits | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not token:
            raise ValueError("an empty provisioning token would let anyone in")
        self._token = token.encode()
        self.ca = ca
        self.registry = registry
        self.sync = sync
        self.limits = limits or ProvisionLimits()
        self.clock = clock or ca.clock

    def _authenticate(self, request: Request) -> None:
        header = request.header("Authorization")
        if not header:
            raise _refuse(401, "missing_token", "Authorization: Bearer <token> is required")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _refuse(401, "invalid_authorization", "Authorization must be 'Bearer <token>'")
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            raise _refuse(401, "invalid_token", "the bearer token is not valid")

    def _check_size(self, request: Request) -> None:
        if len(request.body) > self.limits.max_body_bytes:
            raise _refuse(413, "body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes")

    @staticmethod
    def _check_content_type(request: Request) -> None:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _refuse(415, "unsupported_media_type", "Content-Type must be application/json")

    def dispatch(self, request: Request) -> Response:
        path = request.path.split("?")[0]
        if path.startswith(PATH_PREFIX):
            path = path[len(PATH_PREFIX) :]
        parts = [p for p in path.split("/") if p]
        method = request.method.upper()
        self._check_size(request)
        self._authenticate(request)
        if not parts:
            if method != "POST":
                raise _refuse(405, "method_not_allowed", "use POST to provision a device")
            self._check_content_type(request)
            return self.provision(parse_provision_body(request.body))
        if parts == ["crl"]:
            if method != "POST":
                raise _refuse(405, "method_not_allowed", "use POST /crl to refresh the CRL")
            return self.refresh_crl(force=request.query.get("force") in ("1", "true"))
        if len(parts) == 1:
            device_id = parse_device_id(parts[0])
            if method == "DELETE":
                return self.revoke(device_id)
            if method == "GET":
                return self.describe(device_id)
            raise _refuse(405, "method_not_allowed", "use GET or DELETE on a device")
        raise _refuse(404, "not_found", "no such route")

    def provision(self, fields: Mapping[str, str]) -> Response:
        device_id = f"f2-{fields['mac']}"
        days = self.limits.cert_validity_days
        try:
            if "csr" in fields:
                issued = self.ca.sign_csr(fields["csr"].encode(), device_id, days=days)
            else:
                issued = self.ca.issue_client_certificate(device_id, days=days)
        except CertificateError as exc:
            raise _refuse(400, "invalid_csr", str(exc)) from exc
        rotated = self.registry.get(device_id) is not None
        self.registry.register(
            mac=fields["mac"],
            model=fields["model"],
            serial_number=fields["serial_number"],
            issued=issued,
            now=self.clock(),
        )
        self.sync.sync(extra={issued_name(device_id, issued): issued.certificate_pem})
        body: dict[str, Any] = {
            "device_id": device_id,
            "certificate": issued.certificate_pem.decode(),
            "ca_certificate": self.ca.certificate_pem.decode(),
            "not_after": issued.not_after.isoformat(),
            "serial": issued.serial,
            "fingerprint": issued.fingerprint,
            "model": fields["model"],
        }
        key_pem = issued.private_key_pem
        if key_pem is not None:
            body["private_key"] = key_pem.decode()
        logger.info(
            "provisioned %s model=%s serial=%s key_source=%s",
            device_id,
            fields["model"],
            issued.serial,
            "device" if key_pem is None else "function",
        )
        function_metrics().certificate("rotated" if rotated else "issued")
        return Response(201, body)

    def revoke(self, device_id: str) -> Response:
        record = self.registry.revoke(device_id, self.clock())
        if record is None:
            raise _refuse(404, "unknown_device", f"device {device_id} is not registered")
        self.sync.sync()
        logger.info("revoked %s serial=%s", device_id, record.cert_serial)
        function_metrics().certificate("revoked")
        return Response(
            200, {"device_id": device_id, "status": "revoked", "serial": record.cert_serial}
        )

    def describe(self, device_id: str) -> Response:
        record = self.registry.get(device_id)
        if record is None:
            raise _refuse(404, "unknown_device", f"device {device_id} is not registered")
        return Response(200, record.as_json())

    def refresh_crl(self, *, force: bool = False) -> Response:
        resigned = self.sync.refresh_crl(force=force)
        return Response(200, {"resigned": resigned})
