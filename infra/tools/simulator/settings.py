"""Where the simulator connects: the variables ``make -s env`` prints, read once at the entry.

Endpoints come from the environment (GATEWAY_URL, MQTT_HOST, MQTT_TLS_PORT, CA_CERT); the two
secrets, the provisioning token and the device-management DSN, from files only: the secret files
``provision-token`` and ``devices-dsn`` in ``$F2_SECRETS_DIR`` (``make -s env`` exports the local
stack's folder), or the files the command line names.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore

logger = logging.getLogger(__name__)

TOKEN_SECRET = "provision-token"  # noqa: S105 (a secret's name)
DSN_SECRET = "devices-dsn"  # noqa: S105 (a secret's name)


class SimulatorEnvConfig(BaseSettings):
    """GATEWAY_URL, MQTT_HOST, MQTT_TLS_PORT, CA_CERT, F2_STATE_DIR, F2_SECRETS_DIR."""

    model_config = SettingsConfigDict(extra="ignore")

    gateway_url: str | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_tls_port: int = 8883
    ca_cert: Path | None = None
    f2_state_dir: Path | None = None
    f2_secrets_dir: Path | None = None


class Endpoints(BaseModel):
    """What the fleet needs to provision, connect and read its components."""

    gateway_url: str | None = None
    provision_token: SecretStr | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_tls_port: int = 8883
    ca_cert: Path | None = None
    devices_dsn: SecretStr | None = None


def _optional(store: SecretStore, name: str) -> SecretStr | None:
    try:
        return store.get(name)
    except ConfigError:
        return None


def from_environment(env: SimulatorEnvConfig) -> Endpoints:
    """The endpoints of ``env`` and the secrets of its F2_SECRETS_DIR (each None when absent)."""
    store = SecretStore(env.f2_secrets_dir) if env.f2_secrets_dir else None
    return Endpoints(
        gateway_url=env.gateway_url,
        provision_token=_optional(store, TOKEN_SECRET) if store else None,
        mqtt_host=env.mqtt_host,
        mqtt_tls_port=env.mqtt_tls_port,
        ca_cert=env.ca_cert,
        devices_dsn=_optional(store, DSN_SECRET) if store else None,
    )


def from_local_stack(state_dir: Path | None) -> Endpoints | None:
    """The same values read from a local stack's state (``make up`` ran, env not exported)."""
    from infra.local.stack import LocalStack

    stack = LocalStack.load(state_dir)
    if not (stack.secrets_dir / TOKEN_SECRET).exists():
        return None
    try:
        values = stack.env()
        token = stack.secret(TOKEN_SECRET)
    except OSError as exc:
        logger.warning("cannot read the local stack's settings in %s: %s", stack.state_dir, exc)
        return None
    logger.info("using the local stack in %s", stack.state_dir)
    return Endpoints(
        gateway_url=values["GATEWAY_URL"],
        provision_token=SecretStr(token),
        mqtt_host=values["MQTT_HOST"],
        mqtt_tls_port=int(values["MQTT_TLS_PORT"]),
        ca_cert=Path(values["CA_CERT"]),
        devices_dsn=SecretStr(values["DEVICES_DSN"]),
    )
