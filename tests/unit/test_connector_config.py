"""Connector and autoscaler settings: where the gateway password comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore
from infra.services.autoscaler.config import AutoscalerConfig
from infra.services.connector.config import ConnectorConfig


def test_connector_password__comes_from_basic_auth_password_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "basic-auth-password").write_text("gw-secret")
    monkeypatch.setenv("GATEWAY_PASSWORD", "ignored")
    config = ConnectorConfig()
    assert config.password(SecretStore(tmp_path, env={})).get_secret_value() == "gw-secret"


@pytest.mark.parametrize("config_class", [ConnectorConfig, AutoscalerConfig])
def test_gateway_password__environment_is_no_fallback(
    config_class: type[ConnectorConfig] | type[AutoscalerConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_PASSWORD", "gw-from-env")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "gw-from-env")
    with pytest.raises(ConfigError, match="basic-auth-password") as caught:
        config_class().password(SecretStore(tmp_path / "none", env={}))
    assert "gw-from-env" not in str(caught.value)
