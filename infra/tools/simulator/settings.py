"""Where the simulator connects: the variables ``make -s env`` prints, read once at the entry."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)


class SimulatorEnvConfig(BaseSettings):
    """GATEWAY_URL, PROVISION_TOKEN, MQTT_HOST, MQTT_TLS_PORT, CA_CERT, DEVICES_DSN."""

    model_config = SettingsConfigDict(extra="ignore")

    gateway_url: str | None = None
    provision_token: SecretStr | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_tls_port: int = 8883
    ca_cert: Path | None = None
    devices_dsn: SecretStr | None = None
    f2_state_dir: Path | None = None


def from_local_stack(state_dir: Path | None) -> SimulatorEnvConfig | None:
    """The same values read from a local stack's state (``make up`` ran, env not exported)."""
    from infra.local.stack import LocalStack

    stack = LocalStack.load(state_dir)
    if not (stack.secrets_dir / "provision-token").exists():
        return None
    try:
        values = stack.env()
    except OSError as exc:
        logger.warning("cannot read the local stack's settings in %s: %s", stack.state_dir, exc)
        return None
    logger.info("using the local stack in %s", stack.state_dir)
    return SimulatorEnvConfig(
        gateway_url=values["GATEWAY_URL"],
        provision_token=SecretStr(values["PROVISION_TOKEN"]),
        mqtt_host=values["MQTT_HOST"],
        mqtt_tls_port=int(values["MQTT_TLS_PORT"]),
        ca_cert=Path(values["CA_CERT"]),
        devices_dsn=SecretStr(values["DEVICES_DSN"]),
        f2_state_dir=stack.state_dir,
    )
