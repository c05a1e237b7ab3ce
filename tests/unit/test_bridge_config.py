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


def test_bridge_password__secret_file_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "mqtt-bridge-password").write_text("from-file\n")
    store = SecretStore(tmp_path, env={"MQTT_BRIDGE_PASSWORD": "from-secret-env"})
    config = BridgeConfig(MQTT_PASSWORD="from-env")
    assert config.password(store).get_secret_value() == "from-file"


def test_bridge_password__falls_back_to_mqtt_password_and_is_masked(tmp_path: Path) -> None:
    config = BridgeConfig(MQTT_PASSWORD="from-env")
    assert config.password(SecretStore(tmp_path, env={})).get_secret_value() == "from-env"
    assert "from-env" not in repr(config)


def test_bridge_password__missing_everywhere_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MQTT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="mqtt-bridge-password"):
        BridgeConfig().password(SecretStore(tmp_path, env={}))
