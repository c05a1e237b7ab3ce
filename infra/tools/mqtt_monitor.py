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
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.mqtt_monitor")
    parser.add_argument("topic", nargs="?", default="cmnd/#")
    args = parser.parse_args(argv)
    try:
        host, port = os.environ["MQTT_HOST"], int(os.environ["MQTT_PORT"])
        user, password = os.environ["MQTT_USERNAME"], os.environ["MQTT_PASSWORD"]
    except KeyError as exc:
        print(f'{exc.args[0]} is not set: run `eval "$(make -s env)"` first', file=sys.stderr)
        return 2
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"f2-monitor-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            print(f"connect refused: {reason}", file=sys.stderr)
            c.disconnect()
            return
        c.subscribe(args.topic, qos=0)
        print(f"# subscribed to {args.topic} on {host}:{port}", file=sys.stderr)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        print(f"{stamp} {msg.topic} {msg.payload.decode('utf-8', 'replace')}", flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
