"""Bridge settings: environment names and where the MQTT password comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore


def test_bridge_config__reads_the_documented_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MQTT_HOST": "broker", "MQTT_PORT": "1884", "MQTT_USERNAME": "f2-bridge",
        "KAFKA_BOOTSTRAP": "k1:9092,k2:9092", "BRIDGE_CLIENT_ID": "bridge-7",
        "BRIDGE_SHARE_GROUP": "bridges", "BRIDGE_MAX_IN_FLIGHT": "64", "BRIDGE_HTTP_PORT": "9999",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    config = BridgeConfig()
    assert (config.mqtt_host, config.mqtt_port, config.mqtt_username) == (
        "broker",
        1884,
        "f2-bridge",
    )
    assert config.kafka_bootstrap == "k1:9092,k2:9092"
    assert (config.client_id, config.share_group) == ("bridge-7", "bridges")
    assert (config.max_in_flight, config.http_port) == (64, 9999)


def test_bridge_password__comes_from_the_secret_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt-bridge-password").write_text("from-file\n")
    monkeypatch.setenv("MQTT_PASSWORD", "from-env")
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "from-secret-env")
    config = BridgeConfig()
    assert config.password(SecretStore(tmp_path, env={})).get_secret_value() == "from-file"
    assert "from-env" not in repr(config)


def test_bridge_password__environment_is_no_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "from-env")
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "from-secret-env")
    with pytest.raises(ConfigError, match="mqtt-bridge-password") as caught:
        BridgeConfig().password(SecretStore(tmp_path, env={}))
    assert "from-env" not in str(caught.value)
    assert "from-secret-env" not in str(caught.value)


def test_bridge_password__missing_everywhere_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MQTT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="mqtt-bridge-password"):
        BridgeConfig().password(SecretStore(tmp_path, env={}))
