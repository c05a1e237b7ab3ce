"""mosquitto.conf rendering: per-listener auth, mTLS settings, password hashes mosquitto accepts."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from infra.deploy.mosquitto.config import (
    DEFAULT_AUTOSAVE_CHANGES,
    MAX_PACKET_BYTES,
    BrokerConfig,
    InternalUser,
    TlsFiles,
    autosave_lines,
    hash_password,
    render_config,
    render_internal_acl,
    verify_password,
)

ROOT = Path(__file__).resolve().parents[2]


def config(tmp: Path, **kw: object) -> BrokerConfig:
    tls = TlsFiles(tmp / "ca.crt", tmp / "s.crt", tmp / "s.key", tmp / "crl.pem", tmp / "d.acl")
    return BrokerConfig(
        host="127.0.0.1",
        port=1883,
        password_file=tmp / "passwd",
        internal_acl=tmp / "internal.acl",
        persistence_dir=tmp / "data",
        tls=tls,
        **kw,
    )  # type: ignore[arg-type]


def test_render_config__tls_listener_has_every_required_setting(tmp_path: Path) -> None:
    text = render_config(config(tmp_path, tls_port=8883))
    tls_part = text.split("listener 8883 127.0.0.1", 1)[1]
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        f"crlfile {tmp_path / 'crl.pem'}",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"acl_file {tmp_path / 'd.acl'}",
    ):
        assert line in tls_part
    assert text.startswith("# f2pipe") and "per_listener_settings true" in text
    assert "persistence true" in text


def test_render_config__websockets_only_beside_the_plain_listener(tmp_path: Path) -> None:
    text = render_config(config(tmp_path, ws_port=9001))
    assert text.index("listener 1883") < text.index("listener 9001")
    assert "protocol websockets" in text


def test_render_config__refuses_tls_port_without_files(tmp_path: Path) -> None:
    cfg = BrokerConfig(
        host="127.0.0.1",
        port=1883,
        password_file=tmp_path / "p",
        internal_acl=tmp_path / "a",
        persistence_dir=tmp_path,
        tls_port=8883,
    )
    with pytest.raises(ValueError):
        render_config(cfg)


def test_hash_password__is_pbkdf2_sha512_like_mosquitto_passwd() -> None:
    encoded = hash_password("secret", salt=b"0123456789ab")
    _, kind, rounds, salt, digest = encoded.split("$")
    assert (kind, rounds, base64.b64decode(salt)) == ("7", "101", b"0123456789ab")
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac(
        "sha512", b"secret", b"0123456789ab", 101
    )
    assert verify_password("secret", encoded) and not verify_password("Secret", encoded)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto not installed")
def test_verify_password__accepts_a_hash_written_by_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "u", "pa55"], check=True)
    assert verify_password("pa55", path.read_text().strip().split(":", 1)[1])


def test_internal_acl__refuses_injected_lines() -> None:
    with pytest.raises(ValueError):
        render_internal_acl([InternalUser("svc", "x", (("readwrite", "#\nuser root"),))])
    with pytest.raises(ValueError):
        render_internal_acl([InternalUser("svc\nuser x", "x")])


def test_render_config__snapshots_after_500_changes_by_default(tmp_path: Path) -> None:
    text = render_config(config(tmp_path))
    lines = text.splitlines()
    assert "autosave_on_changes true" in lines and "autosave_interval 500" in lines
    assert "autosave_interval 30" not in lines
    assert f"max_packet_size {MAX_PACKET_BYTES}" in lines


def test_render_config__time_based_autosave_when_asked_and_no_zero_count(tmp_path: Path) -> None:
    timed = render_config(replace(config(tmp_path), autosave_changes=None)).splitlines()
    assert "autosave_interval 30" in timed and "autosave_on_changes true" not in timed
    with pytest.raises(ValueError, match="1 or more"):
        render_config(replace(config(tmp_path), autosave_changes=0))


def test_shipped_broker_config__snapshots_as_the_rendered_one_does() -> None:
    shipped = (ROOT / "infra/deploy/k8s/f2pipe/files/mosquitto.conf").read_text().splitlines()
    assert [line for line in shipped if line.startswith("autosave")] == autosave_lines(
        DEFAULT_AUTOSAVE_CHANGES
    )
