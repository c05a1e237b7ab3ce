"""The local stack's share of downlink commands: the command sender's broker user and its secrets.

``command-token`` holds one caller, ``operator:<token>`` (the format the command function reads:
lines ``<name>:<token>``); ``make -s env`` prints its token as ``COMMAND_TOKEN``.
``mqtt-command-password`` is the password of ``f2-command``, the internal user that alone may
write ``ctrl/#``. The bridge forwards ``ctrl-resp/#`` to Kafka ``iot_command_replies``.
"""

from __future__ import annotations

import secrets

from command.tokens import CallerTokens
from f2lib.contracts.topics import REPLY_FILTER

COMMAND_MQTT_USER = "f2-command"
COMMAND_TOKEN_SECRET = "command-token"  # noqa: S105 (a secret's name)
COMMAND_PASSWORD_SECRET = "mqtt-command-password"  # noqa: S105 (a secret's name)
OPERATOR = "operator"


def new_command_token() -> str:
    """The secret's text for one caller, ``operator``."""
    return f"{OPERATOR}:{secrets.token_urlsafe(32)}"


def new_password() -> str:
    return secrets.token_urlsafe(24)


def operator_token(secret_text: str) -> str:
    """The token of the secret's first caller (what ``make -s env`` prints)."""
    tokens = CallerTokens.parse(secret_text)
    return tokens.tokens[0][1].decode()


def command_function_env(mqtt_port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The command function's broker, over stack.yml's values (``host``: as the function
    reaches it: loopback for processes, the ``mosquitto`` alias for containers)."""
    return {
        "MQTT_HOST": host,
        "MQTT_PORT": str(mqtt_port),
        "MQTT_USERNAME": COMMAND_MQTT_USER,
    }


def bridge_env() -> dict[str, str]:
    """What the bridge needs to forward command replies."""
    return {"BRIDGE_REPLY_FILTER": REPLY_FILTER}
