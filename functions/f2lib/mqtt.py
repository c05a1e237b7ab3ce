"""The one way f2pipe makes a paho MQTT client: callback API 2, v5 or 3.1.1, credentials, TLS.

paho is imported when a client is made, not with this module: every function image carries
f2lib, and only the images that talk MQTT list paho-mqtt in their requirements.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from f2lib.errors import ConfigError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

MqttVersion = Literal["5", "3.1.1"]
Transport = Literal["tcp", "websockets"]


@dataclass(frozen=True, slots=True)
class ClientTls:
    """TLS for a client: the CA that signed the broker (None: the system's), and for mutual TLS
    the client's certificate and key."""

    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def paho_client(
    client_id: str,
    *,
    version: MqttVersion = "5",
    username: str | None = None,
    password: SecretStr | None = None,
    tls: ClientTls | None = None,
    transport: Transport = "tcp",
    manual_ack: bool = False,
    reconnect_delay_s: tuple[int, int] | None = None,
    max_inflight: int | None = None,
    logger: logging.Logger | None = None,
) -> mqtt.Client:
    """A paho ``Client`` (not connected) set up as asked.

    ``reconnect_delay_s`` is paho's own (min, max) reconnect backoff, for clients on paho's
    network loop; ``logger`` receives paho's log (none by default).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    if password is not None and username is None:
        raise ConfigError(f"MQTT client {client_id}: a password without a username")
    protocol = MQTTProtocolVersion.MQTTv5 if version == "5" else MQTTProtocolVersion.MQTTv311
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        transport=transport,
        manual_ack=manual_ack,
    )
    if username is not None:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_cert) if tls.ca_cert else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if reconnect_delay_s is not None:
        client.reconnect_delay_set(*reconnect_delay_s)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    if logger is not None:
        client.enable_logger(logger)
    return client
