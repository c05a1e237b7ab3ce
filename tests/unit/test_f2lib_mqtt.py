"""The paho client factory: protocol, credentials, TLS files, acks, reconnect delays, logger."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from f2lib.errors import ConfigError
from f2lib.mqtt import ClientTls, paho_client
from provision.pki import CertificateAuthority, generate_key, private_key_pem

ROOT = Path(__file__).resolve().parents[2]


def test_paho_client__defaults_to_v5_and_sets_the_credentials() -> None:
    client = paho_client("f2-test", username="f2-bridge", password=SecretStr("s3cret"))
    assert client.callback_api_version == CallbackAPIVersion.VERSION2
    assert client.protocol == MQTTProtocolVersion.MQTTv5
    assert client.transport == "tcp"
    assert client._client_id == b"f2-test"
    assert client.username == "f2-bridge"
    assert client.password == "s3cret"


def test_paho_client__speaks_3_1_1_when_asked() -> None:
    assert paho_client("f2-test", version="3.1.1").protocol == MQTTProtocolVersion.MQTTv311


def test_paho_client__websockets_transport_when_asked() -> None:
    assert paho_client("f2-test", transport="websockets").transport == "websockets"


def test_paho_client__without_credentials_sends_none() -> None:
    client = paho_client("f2-test")
    assert client.username is None
    assert client.password is None


def test_paho_client__a_password_without_a_username_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="without a username"):
        paho_client("f2-test", password=SecretStr("s3cret"))


def test_paho_client__passes_manual_ack_reconnect_delays_inflight_and_logger() -> None:
    log = logging.getLogger("tests.paho")
    client = paho_client(
        "f2-test", manual_ack=True, reconnect_delay_s=(2, 20), max_inflight=7, logger=log
    )
    assert client._manual_ack is True
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (2, 20)
    assert client.max_inflight_messages == 7
    assert client.logger is log


def test_paho_client__mutual_tls_loads_the_files_and_requires_the_broker_certificate(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.generate("test-ca")
    issued = ca.issue_server_certificate(["localhost"])
    assert issued.private_key is not None
    (tmp_path / "ca.crt").write_bytes(ca.certificate_pem)
    (tmp_path / "client.crt").write_bytes(issued.certificate_pem)
    (tmp_path / "client.key").write_bytes(private_key_pem(issued.private_key))
    client = paho_client(
        "f2-test",
        tls=ClientTls(tmp_path / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key"),
    )
    context = client._ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert len(context.get_ca_certs()) == 1


def test_paho_client__a_key_that_does_not_match_the_certificate_fails_at_once(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.generate("test-ca")
    (tmp_path / "ca.crt").write_bytes(ca.certificate_pem)
    (tmp_path / "client.crt").write_bytes(ca.certificate_pem)
    (tmp_path / "client.key").write_bytes(private_key_pem(generate_key()))
    with pytest.raises(ssl.SSLError):
        paho_client(
            "f2-test",
            tls=ClientTls(tmp_path / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key"),
        )


def test_f2lib_mqtt__imports_where_paho_is_not_installed() -> None:
    # every function image carries f2lib; only those that talk MQTT install paho-mqtt
    code = "import sys; sys.modules['paho'] = None; import f2lib.mqtt; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "functions",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
