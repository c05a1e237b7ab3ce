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


def test_group_membership__dynamic_with_a_10_s_session_unless_an_instance_id_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONNECTOR_INSTANCE_ID", raising=False)
    config = ConnectorConfig()
    assert config.instance_id is None and config.session_timeout_ms == 10_000
    monkeypatch.setenv("CONNECTOR_INSTANCE_ID", "f2-connector-local-0")
    assert ConnectorConfig().instance_id == "f2-connector-local-0"


@pytest.mark.parametrize("bad", ["has space", "slash/in", "", "ü"])
def test_instance_id__outside_kafkas_characters_is_refused(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_INSTANCE_ID", bad)
    with pytest.raises(ValueError, match="CONNECTOR_INSTANCE_ID"):
        ConnectorConfig()


def test_session_timeout__below_the_brokers_minimum_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_SESSION_TIMEOUT_MS", "3000")
    with pytest.raises(ValueError, match="CONNECTOR_SESSION_TIMEOUT_MS"):
        ConnectorConfig()
