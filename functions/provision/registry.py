"""The device registry: Device rows in PostgreSQL, and the Mosquitto ACL and CRL rendered from them.

The database is the source of truth. ``RegistrySync.sync`` takes a PostgreSQL advisory lock,
reads every active device and every revoked serial, renders the ACL and a freshly signed CRL,
validates them and hands them to a ``RegistryPublisher`` (filesystem or S3), which writes
atomically and reloads the broker. Because each sync regenerates everything from committed
rows under one lock, concurrent provisioning calls cannot lose each other's entries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from cryptography import x509

from f2lib.contracts.devices import MODELS
from f2lib.contracts.topics import device_command_filter, device_uplink_filter, reply_topic
from f2lib.errors import CertificateError, ProvisioningError, RegistryError, StoreError

from .pki import (
    CertificateAuthority,
    IssuedCertificate,
    RevokedSerial,
    check_crl,
    crl_due,
    crl_pem,
    load_certificate,
    load_crl,
)

logger = logging.getLogger(__name__)

ACL_FILE = "devices.acl"
CRL_FILE = "crl.pem"
CA_FILE = "ca.crt"
REGISTRY_FILE = "registry.json"
ISSUED_DIR = "issued"
SYNC_LOCK_KEY = 0x46325245474953  # "F2REGIS": one registry writer at a time, across replicas

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$")
_DEVICE_ID = re.compile(r"^f2-[0-9a-f]{12}$")
_SERIAL_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")

Connect = Callable[[], "psycopg2.extensions.connection"]


def normalize_mac(value: str) -> str:
    """``AA:BB:CC:DD:EE:FF``, ``aa-bb-…`` or ``aabbccddeeff`` → ``aabbccddeeff``."""
    mac = value.strip().lower()
    if not _MAC.match(mac):
        raise ProvisioningError(
            "mac must be 12 hex digits, optionally separated by ':' or '-'", code="invalid_mac"
        )
    mac = mac.replace(":", "").replace("-", "")
    if mac in ("000000000000", "ffffffffffff") or int(mac[:2], 16) & 1:
        raise ProvisioningError("mac must be a unicast device address", code="invalid_mac")
    return mac


def device_id_for(mac: str) -> str:
    return f"f2-{normalize_mac(mac)}"


def parse_device_id(value: str) -> str:
    """A device id ``f2-<mac>`` (a bare MAC is accepted too)."""
    candidate = value.strip().lower()
    if _DEVICE_ID.match(candidate):
        return candidate
    return device_id_for(candidate)


def check_model(model: str) -> str:
    if model not in MODELS:
        raise ProvisioningError(
            f"unknown model; expected one of {', '.join(MODELS)}", code="unknown_model"
        )
    return model


def check_serial_number(value: str) -> str:
    if not _SERIAL_NUMBER.match(value):
        raise ProvisioningError(
            "serial_number must be 1-64 characters of letters, digits and . _ / -",
            code="invalid_serial_number",
        )
    return value


# --- ACL --------------------------------------------------------------------------------------


def device_acl_lines(device_id: str) -> tuple[str, ...]:
    """What device ``f2-<mac>`` may do: write its uplink and its reply topic, read its commands."""
    return (
        f"topic write {device_uplink_filter(device_id)}",
        f"topic write {reply_topic(device_id)}",
        f"topic read {device_command_filter(device_id)}",
    )


def render_acl(device_ids: Sequence[str]) -> str:
    """The device listener's ACL: each ``f2-<mac>`` may write only ``cmnd/f2-<mac>/#`` and
    ``ctrl-resp/f2-<mac>``, and read only ``ctrl/f2-<mac>/#``."""
    lines = ["# f2pipe device ACL: generated from the device registry, do not edit"]
    for device_id in sorted(set(device_ids)):
        if not _DEVICE_ID.match(device_id):
            raise RegistryError(f"refusing to render ACL for invalid device id {device_id!r}")
        lines += ["", f"user {device_id}", *device_acl_lines(device_id)]
    return "\n".join(lines) + "\n"


def validate_acl(text: str) -> list[str]:
    """Raise unless ``text`` is an ACL as ``render_acl`` writes it; return its device ids.

    Each user entry holds the device's own uplink line and, optionally (an ACL written before
    downlink commands existed), its reply and command lines: nothing else, nothing twice.
    """
    devices: list[str] = []
    current: str | None = None
    allowed: set[str] = set()
    granted: set[str] = set()

    def close(user: str | None) -> None:
        if user is not None and f"topic write {device_uplink_filter(user)}" not in granted:
            raise RegistryError(f"ACL user {user} has no topic line")

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 2 and parts[0] == "user" and _DEVICE_ID.match(parts[1]):
            close(current)
            current = parts[1]
            devices.append(current)
            allowed, granted = set(device_acl_lines(current)), set()
        elif current is not None and " ".join(parts) in allowed - granted and len(parts) == 3:
            granted.add(" ".join(parts))
        else:
            raise RegistryError(f"ACL line {number} is not a device entry")
    close(current)
    return devices


def validate_file(
    name: str, data: bytes, ca_certificate: x509.Certificate, now: dt.datetime
) -> None:
    """Check one published file before it replaces the live one (raises ``RegistryError``)."""
    try:
        if name == ACL_FILE:
            validate_acl(data.decode("ascii"))
        elif name == CRL_FILE:
            check_crl(load_crl(data), ca_certificate, now)
        elif name == CA_FILE or name.startswith(f"{ISSUED_DIR}/"):
            load_certificate(data)
        elif name == REGISTRY_FILE:
            json.loads(data)
        else:
            raise RegistryError(f"unexpected registry file {name!r}")
    except (CertificateError, UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{name} failed validation: {exc}") from exc


# --- publication ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryBundle:
    """Files to publish, by relative name, in the order they must land (ACL and CRL last)."""

    files: Mapping[str, bytes]
    generated_at: dt.datetime
    devices: int = 0
    revoked: int = 0


class RegistryPublisher(Protocol):
    """Where the rendered registry goes: a directory beside the broker, or S3."""

    def publish(self, bundle: RegistryBundle) -> None: ...

    def read(self, name: str) -> bytes | None: ...


# --- the PostgreSQL registry ------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRecord:
    """One row of the Device table, as the API reports it (no secrets)."""

    device_id: str
    mac: str
    model: str
    serial_number: str | None
    status: str
    cert_serial: str | None
    cert_fingerprint: str | None
    cert_not_after: dt.datetime | None
    template_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "mac": self.mac,
            "model": self.model,
            "serial_number": self.serial_number,
            "status": self.status,
            "cert_serial": self.cert_serial,
            "cert_fingerprint": self.cert_fingerprint,
            "cert_not_after": self.cert_not_after.isoformat() if self.cert_not_after else None,
            "template_id": self.template_id,
        }


@dataclass(frozen=True)
class RegistrySnapshot:
    """What the broker must know: active devices and revoked, unexpired serials."""

    devices: Sequence[DeviceRecord]
    revoked: Sequence[RevokedSerial] = field(default_factory=tuple)


_SELECT_DEVICE = (
    "SELECT device_id, mac_address, model, serial_number, status, certificate_serial,"
    " certificate_fingerprint, certificate_not_after, template_id FROM device"
)


class DeviceRegistry:
    """The ``device`` and ``device_certificate`` tables of the device-management database.

    Schema: sql/devices/001_device_management.sql (device, templates) and
    sql/devices/020_device_registry.sql (every issued certificate, for the CRL).
    """

    def __init__(self, connect: Connect) -> None:
        self._connect = connect

    @classmethod
    def from_dsn(cls, dsn: str) -> DeviceRegistry:
        return cls(lambda: psycopg2.connect(dsn, connect_timeout=10))

    @contextmanager
    def _transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        try:
            conn = self._connect()
        except psycopg2.Error as exc:
            raise StoreError(f"device registry unavailable: {exc.__class__.__name__}") from exc
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except psycopg2.Error as exc:
            raise StoreError(f"device registry query failed: {exc.__class__.__name__}") from exc
        finally:
            conn.close()

    def register(
        self,
        *,
        mac: str,
        model: str,
        serial_number: str,
        issued: IssuedCertificate,
        now: dt.datetime,
    ) -> DeviceRecord:
        """Insert or update the device, supersede its previous certificate, record the new one.

        A new device gets its model's default template (so its messages decode at once); a
        re-provisioned device keeps its template unless its model changed.
        """
        device_id = f"f2-{mac}"
        with self._transaction() as cur:
            cur.execute(
                "SELECT template_id FROM device_template WHERE model = %s AND is_default",
                (model,),
            )
            row = cur.fetchone()
            if row is None:
                raise ProvisioningError(
                    f"model {model} has no default device template; load sql/devices",
                    status=409,
                    code="model_without_template",
                )
            cur.execute(
                "INSERT INTO device AS d (device_id, model, template_id, serial_number, status,"
                " certificate_serial, certificate_fingerprint, certificate_not_after, revoked_at)"
                " VALUES (%s, %s, %s, %s, 'active', %s, %s, %s, NULL)"
                " ON CONFLICT (device_id) DO UPDATE SET model = EXCLUDED.model,"
                " template_id = CASE WHEN d.model = EXCLUDED.model THEN d.template_id"
                " ELSE EXCLUDED.template_id END,"
                " serial_number = EXCLUDED.serial_number, status = 'active',"
                " certificate_serial = EXCLUDED.certificate_serial,"
                " certificate_fingerprint = EXCLUDED.certificate_fingerprint,"
                " certificate_not_after = EXCLUDED.certificate_not_after, revoked_at = NULL",
                (
                    device_id,
                    model,
                    row[0],
                    serial_number,
                    issued.serial,
                    issued.fingerprint,
                    issued.not_after,
                ),
            )
            cur.execute(
                "UPDATE device_certificate SET revoked_at = %s, revocation_reason = 'superseded'"
                " WHERE device_id = %s AND revoked_at IS NULL",
                (now, device_id),
            )
            cur.execute(
                "INSERT INTO device_certificate (serial, device_id, fingerprint, not_before,"
                " not_after, issued_at, certificate_pem) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    issued.serial,
                    device_id,
                    issued.fingerprint,
                    issued.certificate.not_valid_before_utc,
                    issued.not_after,
                    now,
                    issued.certificate_pem.decode(),
                ),
            )
            cur.execute(_SELECT_DEVICE + " WHERE device_id = %s", (device_id,))
            record = DeviceRecord(*cur.fetchone())
        logger.info("registered device %s model=%s cert_serial=%s", device_id, model, issued.serial)
        return record

    def revoke(self, device_id: str, now: dt.datetime) -> DeviceRecord | None:
        """Mark the device revoked and revoke its certificates; None when it is unknown."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE device SET status = 'revoked', revoked_at = COALESCE(revoked_at, %s)"
                " WHERE device_id = %s",
                (now, device_id),
            )
            if cur.rowcount == 0:
                return None
            cur.execute(
                "UPDATE device_certificate SET revoked_at = %s, revocation_reason = 'revoked'"
                " WHERE device_id = %s AND revoked_at IS NULL",
                (now, device_id),
            )
            cur.execute(_SELECT_DEVICE + " WHERE device_id = %s", (device_id,))
            record = DeviceRecord(*cur.fetchone())
        logger.info("revoked device %s", device_id)
        return record

    def get(self, device_id: str) -> DeviceRecord | None:
        with self._transaction() as cur:
            cur.execute(_SELECT_DEVICE + " WHERE device_id = %s", (device_id,))
            row = cur.fetchone()
        return DeviceRecord(*row) if row else None

    def snapshot(self, cur: psycopg2.extensions.cursor, now: dt.datetime) -> RegistrySnapshot:
        cur.execute(
            _SELECT_DEVICE + " WHERE status = 'active' AND certificate_serial IS NOT NULL"
            " ORDER BY device_id"
        )
        devices = [DeviceRecord(*row) for row in cur.fetchall()]
        # Expired certificates fail verification anyway; keep them a day for clock skew.
        cur.execute(
            "SELECT serial, revoked_at FROM device_certificate"
            " WHERE revoked_at IS NOT NULL AND not_after > %s ORDER BY serial",
            (now - dt.timedelta(days=1),),
        )
        revoked = [RevokedSerial(int(serial, 16), at) for serial, at in cur.fetchall()]
        return RegistrySnapshot(devices, revoked)

    @contextmanager
    def locked(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor holding the registry's advisory lock (one writer across all replicas)."""
        try:
            conn = self._connect()
        except psycopg2.Error as exc:
            raise StoreError(f"device registry unavailable: {exc.__class__.__name__}") from exc
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK_KEY,))
                try:
                    yield cur
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (SYNC_LOCK_KEY,))
        except psycopg2.Error as exc:
            raise StoreError(f"device registry query failed: {exc.__class__.__name__}") from exc
        finally:
            conn.close()


# --- rendering and sync -----------------------------------------------------------------------


def render_bundle(
    ca: CertificateAuthority,
    snapshot: RegistrySnapshot,
    *,
    extra: Mapping[str, bytes] | None = None,
) -> RegistryBundle:
    """ACL, a freshly signed CRL, the CA certificate and registry.json; validated."""
    now = ca.clock()
    files: dict[str, bytes] = dict(extra or {})
    files[CA_FILE] = ca.certificate_pem
    files[REGISTRY_FILE] = json.dumps(
        {
            "generated_at": now.isoformat(),
            "devices": [d.as_json() for d in snapshot.devices],
            "revoked_serials": [format(r.serial, "x") for r in snapshot.revoked],
        },
        indent=2,
    ).encode()
    files[CRL_FILE] = crl_pem(ca.build_crl(snapshot.revoked))
    files[ACL_FILE] = render_acl([d.device_id for d in snapshot.devices]).encode()
    for name, data in files.items():
        validate_file(name, data, ca.certificate, now)
    return RegistryBundle(files, now, len(snapshot.devices), len(snapshot.revoked))


class RegistrySync:
    """Regenerates ACL and CRL from the registry and publishes them, one writer at a time."""

    def __init__(
        self, ca: CertificateAuthority, registry: DeviceRegistry, publisher: RegistryPublisher
    ) -> None:
        self.ca = ca
        self.registry = registry
        self.publisher = publisher

    def sync(self, *, extra: Mapping[str, bytes] | None = None) -> RegistryBundle:
        with self.registry.locked() as cur:
            snapshot = self.registry.snapshot(cur, self.ca.clock())
            bundle = render_bundle(self.ca, snapshot, extra=extra)
            self.publisher.publish(bundle)
        logger.info(
            "registry published: %d devices, %d revoked serials", bundle.devices, bundle.revoked
        )
        return bundle

    def crl_due(self) -> bool:
        """True when the published CRL is missing, invalid or close to its nextUpdate."""
        current = self.publisher.read(CRL_FILE)
        if current is None:
            return True
        try:
            crl = load_crl(current)
            check_crl(crl, self.ca.certificate, self.ca.clock())
        except CertificateError:
            return True
        return crl_due(crl, self.ca.clock())

    def refresh_crl(self, *, force: bool = False) -> bool:
        """Re-sign and publish the CRL when due (or ``force``); True when it did."""
        if not force and not self.crl_due():
            return False
        self.sync()
        return True


def issued_name(device_id: str, issued: IssuedCertificate) -> str:
    return f"{ISSUED_DIR}/{device_id}/{issued.serial}.crt"
