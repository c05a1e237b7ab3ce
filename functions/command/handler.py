"""OpenFaaS entry point of the command function: config once, then requests to the Commander.

Secrets (``/var/openfaas/secrets/<name>``, ``F2_SECRETS_DIR`` overrides the folder):

* ``command-token``: the callers, lines ``<name>:<token>`` or a JSON object
  ``{"<name>": "<token>"}``; the audit trail records the caller's name as ``requested_by``
  (see ``tokens``). Distinct from the provisioning token.
* ``devices-dsn``: libpq DSN of the device-management database (registry, audit trail).
* ``mqtt-command-password``: the password of ``MQTT_USERNAME`` on the internal listener, the
  one internal user the broker lets write ``ctrl/#``.

Environment: see ``CommandConfig``.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.batchfn import Lazy
from f2lib.contracts.commands import MAX_WAIT_S
from f2lib.errors import BrokerError, CommandError, ConfigError, F2PipeError, StoreError
from f2lib.httpfn import Request, answer, error
from f2lib.metrics import function_metrics
from f2lib.secrets import SecretStore

from .commander import Commander, CommandLimits
from .link import CommandLink, LinkConfig, make_client
from .store import CommandStore
from .tokens import CallerTokens

logger = logging.getLogger(__name__)


class CommandConfig(BaseSettings):
    """Environment of the command function (names are the upper-cased field names)."""

    model_config = SettingsConfigDict(extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "f2-command"
    mqtt_connect_timeout_seconds: float = 10.0
    mqtt_publish_timeout_seconds: float = 5.0
    max_body_bytes: int = 8 * 1024
    max_wait_seconds: float = MAX_WAIT_S
    command_expiry_seconds: float = 30.0
    db_pool_size: int = 8
    db_connect_timeout_seconds: int = 5

    @classmethod
    def load(cls) -> CommandConfig:
        try:
            config = cls()
        except ValidationError as exc:
            raise ConfigError(f"command configuration is invalid: {exc}") from exc
        if not 0 < config.max_wait_seconds <= MAX_WAIT_S:
            raise ConfigError(f"MAX_WAIT_SECONDS must be in (0, {MAX_WAIT_S:g}]")
        return config


def build_link(config: CommandConfig, secrets: SecretStore) -> CommandLink:
    link_config = LinkConfig(
        host=config.mqtt_host,
        port=config.mqtt_port,
        username=config.mqtt_username,
        connect_timeout_s=config.mqtt_connect_timeout_seconds,
        publish_timeout_s=config.mqtt_publish_timeout_seconds,
    )
    password = secrets.get("mqtt-command-password")
    return CommandLink(make_client(link_config, password), link_config).start()


def build_commander(
    config: CommandConfig | None = None, secrets: SecretStore | None = None
) -> Commander:
    config = config or CommandConfig.load()
    secrets = secrets or SecretStore()
    tokens = CallerTokens.parse(secrets.get("command-token").get_secret_value())
    store = CommandStore.from_dsn(
        secrets.get("devices-dsn").get_secret_value(),
        max_connections=config.db_pool_size,
        connect_timeout=config.db_connect_timeout_seconds,
    )
    secrets.get("mqtt-command-password")  # a missing secret is a misconfiguration, said at once
    link: Lazy[CommandLink] = Lazy(lambda: build_link(config, secrets))
    return Commander(
        tokens=tokens,
        store=store,
        link=link.get,
        metrics=function_metrics(),
        limits=CommandLimits(
            max_body_bytes=config.max_body_bytes,
            max_wait_s=config.max_wait_seconds,
            expiry_s=config.command_expiry_seconds,
        ),
    )


_commander: Lazy[Commander] = Lazy(build_commander)


REALM = "f2pipe-command"


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return answer(status, body, realm=REALM)


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return error(status, code, message, realm=REALM)


def handle(event: Any, context: Any) -> dict[str, Any]:
    """python3-http contract: ``event`` has method, path, headers, body, query."""
    request = Request.of(event)
    try:
        response = _commander.get().dispatch(request)
    except CommandError as exc:
        logger.info("refused %s %s: %s", request.method, request.path, exc.code)
        return _error(exc.status, exc.code, str(exc))
    except ConfigError as exc:
        logger.error("command is misconfigured: %s", exc)
        return _error(500, "misconfigured", "the command function is misconfigured")
    except StoreError as exc:
        logger.error("command store failed: %s", exc)
        return _error(503, "unavailable", "device database temporarily unavailable; retry")
    except BrokerError as exc:
        logger.error("command not published: %s", exc)
        return _error(503, "broker_unavailable", "the MQTT broker did not take the command")
    except F2PipeError as exc:
        logger.error("command failed: %s", exc.__class__.__name__)
        return _error(500, "internal_error", "the command failed")
    return _answer(response.status, response.body)
