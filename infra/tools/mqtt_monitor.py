"""`python -m infra.tools.mqtt_monitor`: print every message under a topic filter.

Connects to the internal listener with MQTT_HOST, MQTT_PORT, MQTT_USERNAME and MQTT_PASSWORD
from the environment (``eval "$(make -s env)"``), so the password never shows in ``ps``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.mqtt import paho_client


class MonitorConfig(BaseSettings):
    """Where and as whom the monitor connects; every value from the environment."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    host: str = Field(alias="MQTT_HOST")
    port: int = Field(alias="MQTT_PORT")
    username: str = Field(alias="MQTT_USERNAME")
    password: SecretStr = Field(alias="MQTT_PASSWORD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.mqtt_monitor")
    parser.add_argument("topic", nargs="?", default="cmnd/#")
    args = parser.parse_args(argv)
    try:
        config = MonitorConfig()  # every field from the environment
    except ValidationError as exc:
        names = ", ".join(str(error["loc"][0]) for error in exc.errors())
        print(f'{names} not set or invalid: run `eval "$(make -s env)"` first', file=sys.stderr)
        return 2
    client = paho_client(
        f"f2-monitor-{os.getpid()}", username=config.username, password=config.password
    )

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
