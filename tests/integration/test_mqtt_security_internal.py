"""The internal password listener of the real broker: right password in, wrong password out."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from infra.local.launch.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration


def connect_result(server: MosquittoServer, username: str, password: str) -> int:
    done = threading.Event()
    result: dict[str, int] = {}

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        result["rc"] = reason_code.value
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return result["rc"]


def test_internal_listener__accepts_the_internal_user(mosquitto: MosquittoServer) -> None:
    assert connect_result(mosquitto, mosquitto.username, mosquitto.password) == 0


def test_internal_listener__rejects_a_wrong_password(mosquitto: MosquittoServer) -> None:
    assert connect_result(mosquitto, mosquitto.username, mosquitto.password + "x") != 0


def test_internal_listener__rejects_an_unknown_user(mosquitto: MosquittoServer) -> None:
    assert connect_result(mosquitto, "nobody", "whatever") != 0


def test_add_user__takes_effect_after_reload_without_restart(mosquitto: MosquittoServer) -> None:
    pid = mosquitto.pid
    mosquitto.add_user("late-user", "late-password", [("read", "cmnd/#")])
    assert connect_result(mosquitto, "late-user", "late-password") == 0
    assert mosquitto.pid == pid


def test_internal_user__round_trips_a_message(mosquitto: MosquittoServer) -> None:
    got = threading.Event()
    subscribed = threading.Event()
    topic = f"cmnd/f2-{uuid.uuid4().hex[:12]}/sensor-mode/J1/sensor-1"

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.username_pw_set(mosquitto.username, mosquitto.password)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("cmnd/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, msg: got.set() if msg.topic == topic else None
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-pub")
        pub.username_pw_set(mosquitto.username, mosquitto.password)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        pub.publish(topic, b'{"status": true}', qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert got.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
