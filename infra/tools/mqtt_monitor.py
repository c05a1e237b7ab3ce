"""`python -m infra.tools.mqtt_monitor`: print every message under a topic filter.

Connects to the internal listener with MQTT_HOST, MQTT_PORT and MQTT_USERNAME from the
environment (``eval "$(make -s env)"``) and the password from a file: ``--password-file``, else
the secret file ``mqtt-monitor-password`` in ``$F2_SECRETS_DIR`` (never the environment).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.errors import ConfigError
from f2lib.mqtt import paho_client
from f2lib.secrets import SecretStore, read_secret_file

PASSWORD_SECRET = "mqtt-monitor-password"  # noqa: S105 (a secret's name)


class MonitorConfig(BaseSettings):
    """Where and as whom the monitor connects (the password is a file: see the module)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    host: str = Field(alias="MQTT_HOST")
    port: int = Field(alias="MQTT_PORT")
    username: str = Field(alias="MQTT_USERNAME")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.mqtt_monitor")
    parser.add_argument("topic", nargs="?", default="cmnd/#")
    parser.add_argument(
        "--password-file", type=Path, help=f"default: $F2_SECRETS_DIR/{PASSWORD_SECRET}"
    )
    args = parser.parse_args(argv)
    try:
        config = MonitorConfig()  # every field from the environment
    except ValidationError as exc:
        names = ", ".join(str(error["loc"][0]) for error in exc.errors())
        print(f'{names} not set or invalid: run `eval "$(make -s env)"` first', file=sys.stderr)
        return 2
    try:
        password = (
            read_secret_file(args.password_file)
            if args.password_file
            else SecretStore().get(PASSWORD_SECRET)
        )
    except ConfigError as exc:
        print(f'{exc} (run `eval "$(make -s env)"` first)', file=sys.stderr)
        return 2
    client = paho_client(f"f2-monitor-{os.getpid()}", username=config.username, password=password)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            print(f"connect refused: {reason}", file=sys.stderr)
            c.disconnect()
            return
        c.subscribe(args.topic, qos=0)
        print(f"# subscribed to {args.topic} on {config.host}:{config.port}", file=sys.stderr)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        print(f"{stamp} {msg.topic} {msg.payload.decode('utf-8', 'replace')}", flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(config.host, config.port)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
