"""Connector settings: where the gateway password comes from."""

from __future__ import annotations

from pathlib import Path

from f2lib.secrets import SecretStore
from infra.services.connector.config import ConnectorConfig


def test_connector_password__comes_from_basic_auth_password_secret(tmp_path: Path) -> None:
    (tmp_path / "basic-auth-password").write_text("gw-secret")
    config = ConnectorConfig(GATEWAY_PASSWORD="ignored")
    assert config.password(SecretStore(tmp_path, env={})).get_secret_value() == "gw-secret"
    assert (
        ConnectorConfig(GATEWAY_PASSWORD="env")
        .password(SecretStore(tmp_path / "none", env={}))
        .get_secret_value()
        == "env"
    )
