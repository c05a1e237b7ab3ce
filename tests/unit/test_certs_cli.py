"""``python -m certs init``: the internal MQTT user comes from configuration."""

from __future__ import annotations

from pathlib import Path

from bridge.config import BridgeConfig
from certs.cli import init, main


def test_init__names_the_internal_mqtt_user_as_the_bridge_defaults_it(tmp_path: Path) -> None:
    init(tmp_path, ["localhost"])
    written = (tmp_path / "secrets" / "mqtt-username").read_text().strip()
    assert written == BridgeConfig.model_fields["mqtt_username"].default


def test_init__mqtt_username_option_names_the_internal_mqtt_user(tmp_path: Path) -> None:
    assert main(["init", "--dir", str(tmp_path), "--mqtt-username", "site-a-bridge"]) == 0
    assert (tmp_path / "secrets" / "mqtt-username").read_text().strip() == "site-a-bridge"
