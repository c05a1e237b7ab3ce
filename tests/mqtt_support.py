"""A QoS 1 MQTT v5 publisher for tests, on a listener with username and password."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import SecretStr

from f2lib.mqtt import paho_client


class Publisher:
    """Publishes at QoS 1 and waits for every PUBACK (up to 100 in flight)."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.client = paho_client(
            f"test-pub-{uuid.uuid4().hex[:12]}",
            username=username,
            password=SecretStr(password),
            max_inflight=100,
        )
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payloads: list[bytes], timeout: float = 30) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout=timeout)
            assert info.is_published()

    def publish_json(self, topic: str, payload: dict[str, Any] | str, timeout: float = 10) -> None:
        """One message: ``payload`` as JSON, or a string sent as it is."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        self.publish(topic, [body.encode()], timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
