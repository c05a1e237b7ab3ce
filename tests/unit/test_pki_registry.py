"""Registry rendering and checks: MAC rules, ACL round trip, all-or-nothing publish, body rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from f2lib.errors import ProvisioningError, RegistryError
from provision.pki import CertificateAuthority, crl_pem
from provision.provisioner import parse_provision_body
from provision.publishers import FilesystemPublisher
from provision.registry import (
    RegistryBundle,
    RegistrySnapshot,
    normalize_mac,
    parse_device_id,
    render_acl,
    render_bundle,
    validate_acl,
)


@pytest.mark.parametrize("raw", ["E4:FD:45:F6:54:BE", "e4-fd-45-f6-54-be", "e4fd45f654be"])
def test_normalize_mac__accepts_the_three_spellings(raw: str) -> None:
    assert normalize_mac(raw) == "e4fd45f654be"


@pytest.mark.parametrize(
    "raw",
    [
        "e4:fd:45:f6:54",
        "e4:fd-45:f6:54:be",
        "g4fd45f654be",
        "000000000000",
        "ffffffffffff",
        "01005e000001",
        "",
        "e4fd45f654be0",
    ],
)
def test_normalize_mac__refuses_malformed_and_non_unicast(raw: str) -> None:
    with pytest.raises(ProvisioningError) as caught:
        normalize_mac(raw)
    assert caught.value.code == "invalid_mac"


def test_parse_device_id__takes_device_ids_and_bare_macs() -> None:
    assert parse_device_id("F2-E4FD45F654BE") == "f2-e4fd45f654be"
    assert parse_device_id("e4:fd:45:f6:54:be") == "f2-e4fd45f654be"


def test_acl__lets_each_device_write_only_its_own_subtree() -> None:
    acl = render_acl(["f2-0a1b2c3d4e5f", "f2-e4fd45f654be"])
    assert "user f2-0a1b2c3d4e5f\ntopic write cmnd/f2-0a1b2c3d4e5f/#" in acl
    assert "pattern" not in acl and "readwrite" not in acl
    assert validate_acl(acl) == ["f2-0a1b2c3d4e5f", "f2-e4fd45f654be"]


@pytest.mark.parametrize(
    "text",
    [
        "user f2-0a1b2c3d4e5f\ntopic readwrite #\n",
        "user f2-0a1b2c3d4e5f\ntopic write cmnd/f2-e4fd45f654be/#\n",
        "pattern write cmnd/%u/#\n",
        "topic write cmnd/#\n",
        "user f2-0a1b2c3d4e5f\n",
    ],
)
def test_validate_acl__refuses_anything_but_device_entries(text: str) -> None:
    with pytest.raises(RegistryError):
        validate_acl(text)


def test_render_acl__refuses_an_invalid_device_id() -> None:
    with pytest.raises(RegistryError):
        render_acl(["f2-0a1b2c3d4e5f\ntopic readwrite #"])


def test_filesystem_publisher__writes_nothing_when_one_file_is_invalid(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate()
    publisher = FilesystemPublisher(tmp_path, ca.certificate)
    good = render_bundle(ca, RegistrySnapshot([]))
    publisher.publish(good)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    files = dict(good.files)
    files["crl.pem"] = crl_pem(ca.build_crl([]))
    files["devices.acl"] = b"user f2-0a1b2c3d4e5f\ntopic readwrite #\n"
    with pytest.raises(RegistryError):
        publisher.publish(RegistryBundle(files, dt.datetime.now(dt.UTC)))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_filesystem_publisher__reloads_only_when_something_changed(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate()
    reloads: list[bool] = []
    publisher = FilesystemPublisher(tmp_path, ca.certificate, lambda: reloads.append(True) or True)
    bundle = render_bundle(ca, RegistrySnapshot([]))
    publisher.publish(bundle)
    publisher.publish(bundle)
    assert len(reloads) == 1
    assert (tmp_path / "devices.acl").stat().st_mode & 0o777 == 0o644


def body(**fields: object) -> bytes:
    base = {"mac": "e4:fd:45:f6:54:be", "model": "F2-212", "serial_number": "SN-1"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_parse_provision_body__normalises_the_mac() -> None:
    assert parse_provision_body(body())["mac"] == "e4fd45f654be"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[]", "invalid_body"),
        (b"\xff", "invalid_json"),
        (body(model="F2-999"), "unknown_model"),
        (body(model=None), "missing_field"),
        (body(extra=1), "unknown_field"),
        (body(serial_number=""), "invalid_field"),
        (body(csr="x" * 9000), "invalid_csr"),
    ],
)
def test_parse_provision_body__names_the_problem(data: bytes, code: str) -> None:
    with pytest.raises(ProvisioningError) as caught:
        parse_provision_body(data)
    assert caught.value.code == code


def test_parse_provision_body__json_nested_too_deep_is_invalid_json_not_a_crash() -> None:
    # found by fuzzing: a 4 KB body of brackets raised RecursionError, answered 500
    with pytest.raises(ProvisioningError) as refused:
        parse_provision_body(b"[" * 2000 + b"]" * 2000)
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
