"""CertificateAuthority: CA shape, device and server certificates, CSR checks, CRL freshness."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from f2lib.errors import CertificateError
from provision.pki import (
    CRL_REFRESH_MARGIN,
    CertificateAuthority,
    RevokedSerial,
    check_crl,
    crl_due,
    crl_pem,
    generate_csr,
    generate_key,
    load_crl,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate()


def test_ca__is_ec_p256_with_pathlen_0_and_cert_and_crl_sign_only(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature


def test_ca__round_trips_through_pem(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(ca.certificate_pem, ca.private_key_pem)
    assert again.certificate == ca.certificate


def test_ca__refuses_a_key_that_does_not_match(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.generate()
    with pytest.raises(CertificateError):
        CertificateAuthority.from_pem(ca.certificate_pem, other.private_key_pem)


def test_client_certificate__has_device_cn_client_auth_and_is_signed_by_ca(
    ca: CertificateAuthority,
) -> None:
    issued = ca.issue_client_certificate("f2-e4fd45f654be")
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "f2-e4fd45f654be"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.issued(cert)
    assert issued.private_key_pem is not None and b"PRIVATE KEY" in issued.private_key_pem
    assert len(issued.fingerprint) == 64


def test_server_certificate__names_loopback_ip_and_localhost(ca: CertificateAuthority) -> None:
    cert = ca.issue_server_certificate(["127.0.0.1", "localhost"]).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_sign_csr__uses_the_requested_identity_not_the_csr_subject(
    ca: CertificateAuthority,
) -> None:
    key = generate_key()
    issued = ca.sign_csr(generate_csr(key, "f2-ffffffffffff-attacker"), "f2-0a1b2c3d4e5f")
    cn = issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "f2-0a1b2c3d4e5f"
    assert issued.private_key is None
    assert issued.certificate.public_key() == key.public_key()


def test_sign_csr__rejects_a_csr_whose_signature_does_not_verify(
    ca: CertificateAuthority,
) -> None:
    csr = x509.load_pem_x509_csr(generate_csr(generate_key(), "f2-0a1b2c3d4e5f"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit of the signature
    tampered = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(CertificateError):
        ca.sign_csr(tampered, "f2-0a1b2c3d4e5f")


def test_sign_csr__rejects_an_rsa_key(ca: CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="P-256"):
        ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), "f2-0a1b2c3d4e5f")


def test_sign_csr__rejects_garbage(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateError):
        ca.sign_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "f2-0a1b2c3d4e5f",
        )


def test_crl__lists_revoked_serials_and_verifies_against_the_ca(ca: CertificateAuthority) -> None:
    issued = ca.issue_client_certificate("f2-0a1b2c3d4e5f")
    now = dt.datetime.now(dt.UTC)
    crl = load_crl(crl_pem(ca.build_crl([RevokedSerial(issued.certificate.serial_number, now)])))
    assert crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number)
    check_crl(crl, ca.certificate, now)


def test_crl__signed_by_another_ca_is_refused(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.generate()
    with pytest.raises(CertificateError):
        check_crl(other.build_crl([]), ca.certificate, dt.datetime.now(dt.UTC))


def test_crl__past_next_update_is_refused(ca: CertificateAuthority) -> None:
    crl = ca.build_crl([], validity=dt.timedelta(hours=1))
    with pytest.raises(CertificateError, match="nextUpdate"):
        check_crl(crl, ca.certificate, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


def test_crl_due__only_once_less_than_the_margin_remains(ca: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = ca.build_crl([])
    assert not crl_due(crl, now)
    assert crl_due(crl, now + dt.timedelta(days=30) - CRL_REFRESH_MARGIN + dt.timedelta(hours=1))


def test_crl_number__grows_between_signatures(ca: CertificateAuthority) -> None:
    first = ca.build_crl([]).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    second = ca.build_crl([]).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert second > first


def test_client_certificate__explicit_validity_can_be_in_the_past(
    ca: CertificateAuthority,
) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = ca.issue_client_certificate(
        "f2-0a1b2c3d4e5f",
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    assert issued.not_after < now
