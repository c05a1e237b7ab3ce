"""The internal certificate authority: EC P-256 CA, broker and device certificates, CSRs, CRL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from f2lib.errors import CertificateError

logger = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
CURVE = ec.SECP256R1
BACKDATE = dt.timedelta(minutes=5)
CRL_VALIDITY = dt.timedelta(days=30)
# Re-sign the CRL once less than this remains before nextUpdate (an expired CRL locks
# every device out): with 30 days of validity, a CRL is re-signed after at most 7 days.
CRL_REFRESH_MARGIN = dt.timedelta(days=23)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError("not a PEM certificate") from exc


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError("not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, CURVE):
        raise CertificateError("the key is not an EC P-256 key")
    return key


def generate_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A PEM CSR for ``key`` (what a device or the register CLI sends)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_device_csr(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a CSR whose signature verifies and whose key is EC P-256.

    The CSR's subject and extensions are ignored: the identity comes from the request.
    """
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise CertificateError("csr is not a PEM certificate signing request") from exc
    try:
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
        raise CertificateError("csr cannot be parsed") from exc
    if not valid:
        raise CertificateError("csr signature does not verify")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, CURVE
    ):
        raise CertificateError("csr key must be EC P-256")
    return public_key


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and, when the CA generated it, its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None = None

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def private_key_pem(self) -> bytes | None:
        return private_key_pem(self.private_key) if self.private_key is not None else None


@dataclass(frozen=True)
class RevokedSerial:
    """One CRL entry."""

    serial: int
    revoked_at: dt.datetime


class CertificateAuthority:
    """An EC P-256 CA (path length 0) that signs the broker's and the devices' certificates."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        clock: Clock = utcnow,
    ) -> None:
        public_key = certificate.public_key()
        if (
            not isinstance(public_key, ec.EllipticCurvePublicKey)
            or public_key.public_numbers() != private_key.public_key().public_numbers()
        ):
            raise CertificateError("CA key does not match the CA certificate")
        self.certificate = certificate
        self.private_key = private_key
        self.clock = clock

    @classmethod
    def generate(
        cls,
        common_name: str = "f2pipe internal CA",
        *,
        days: int = 3650,
        clock: Clock = utcnow,
    ) -> CertificateAuthority:
        key = generate_key()
        now = clock()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "f2pipe"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        logger.info("generated CA %r serial=%s", common_name, serial_hex(cert.serial_number))
        return cls(cert, key, clock=clock)

    @classmethod
    def from_pem(
        cls, certificate_pem: bytes, private_key_pem: bytes, *, clock: Clock = utcnow
    ) -> CertificateAuthority:
        return cls(
            load_certificate(certificate_pem), load_private_key(private_key_pem), clock=clock
        )

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def private_key_pem(self) -> bytes:
        return private_key_pem(self.private_key)

    def _leaf(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        usage: x509.ObjectIdentifier,
        *,
        days: int,
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
        san: Sequence[x509.GeneralName] = (),
    ) -> x509.Certificate:
        now = self.clock()
        start = not_before or now - BACKDATE
        end = not_after or now + dt.timedelta(days=days)
        if end <= start:
            raise CertificateError("certificate validity ends before it starts")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
        return builder.sign(self.private_key, hashes.SHA256())

    def issue_server_certificate(
        self, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *, days: int = 825
    ) -> IssuedCertificate:
        """The broker's certificate (serverAuth) for ``hosts`` (IP addresses or DNS names)."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = generate_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "f2pipe"),
                x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "mosquitto"),
            ]
        )
        cert = self._leaf(
            subject,
            key.public_key(),
            ExtendedKeyUsageOID.SERVER_AUTH,
            days=days,
            not_before=None,
            not_after=None,
            san=names,
        )
        return IssuedCertificate(cert, key)

    def issue_client_certificate(
        self,
        common_name: str,
        public_key: ec.EllipticCurvePublicKey | None = None,
        *,
        days: int = 365,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A clientAuth certificate with CN ``common_name`` (``f2-<mac>`` for devices).

        Without ``public_key`` the CA generates the key pair and returns the private key.
        """
        key = generate_key() if public_key is None else None
        if public_key is None and key is not None:
            public_key = key.public_key()
        assert public_key is not None
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = self._leaf(
            subject,
            public_key,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            days=days,
            not_before=not_before,
            not_after=not_after,
        )
        logger.info(
            "issued client certificate cn=%s serial=%s", common_name, serial_hex(cert.serial_number)
        )
        return IssuedCertificate(cert, key)

    def sign_csr(self, csr_pem: bytes, common_name: str, *, days: int = 365) -> IssuedCertificate:
        """Verify ``csr_pem`` and issue a client certificate for its key with CN ``common_name``."""
        return self.issue_client_certificate(common_name, load_device_csr(csr_pem), days=days)

    def issued(self, cert: x509.Certificate) -> bool:
        """True when this CA signed ``cert``."""
        if cert.issuer != self.certificate.subject:
            return False
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def build_crl(
        self,
        revoked: Iterable[RevokedSerial],
        *,
        validity: dt.timedelta = CRL_VALIDITY,
        number: int | None = None,
    ) -> x509.CertificateRevocationList:
        """A freshly signed CRL listing ``revoked``; its number grows with time."""
        now = self.clock()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - BACKDATE)
            .next_update(now + validity)
            .add_extension(
                x509.CRLNumber(number if number is not None else int(now.timestamp() * 1e6)),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
        for entry in sorted(revoked, key=lambda e: e.serial):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(entry.revoked_at)
                .build()
            )
        return builder.sign(self.private_key, hashes.SHA256())


def load_crl(pem: bytes) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise CertificateError("not a PEM CRL") from exc


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_due(
    crl: x509.CertificateRevocationList,
    now: dt.datetime,
    margin: dt.timedelta = CRL_REFRESH_MARGIN,
) -> bool:
    """True when ``crl`` must be re-signed: less than ``margin`` left before its nextUpdate."""
    next_update = crl.next_update_utc
    return next_update is None or next_update - now < margin


def check_crl(
    crl: x509.CertificateRevocationList, ca_certificate: x509.Certificate, now: dt.datetime
) -> None:
    """Raise unless ``crl`` is signed by ``ca_certificate`` and still current (no CA key needed)."""
    public_key = ca_certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertificateError("CA certificate does not hold an EC key")
    if crl.issuer != ca_certificate.subject or not crl.is_signature_valid(public_key):
        raise CertificateError("CRL is not signed by the CA")
    next_update = crl.next_update_utc
    if next_update is None or next_update <= now:
        raise CertificateError("CRL has passed its nextUpdate")
