"""DeviceParameterStore on the real database: one query per batch, TTL cache, reconnects."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from decode.params import DeviceParameterStore
from f2lib.errors import StoreError, UnknownComponentError, UnknownDeviceError

pytestmark = pytest.mark.integration

DEMO = "f2-e4fd45f654be"
DEMO_214 = "f2-0a1b2c3d4e5f"


class CountingCursor(psycopg2.extensions.cursor):
    """Counts the statements sent to the server through this connection."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        self.connection.statements += 1
        return super().execute(query, vars)


class CountingConnection(psycopg2.extensions.connection):
    statements = 0

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cursor_factory", CountingCursor)
        return super().cursor(*args, **kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_store(dsn: str, clock: Clock, **kw: Any) -> tuple[DeviceParameterStore, list[Any]]:
    connections: list[Any] = []

    def connect() -> Any:
        conn = psycopg2.connect(dsn, connection_factory=CountingConnection)
        connections.append(conn)
        return conn

    return DeviceParameterStore(connect, clock=clock, **kw), connections


def statements(connections: list[Any]) -> int:
    return sum(c.statements for c in connections)


def test_one_query_fetches_every_device_of_a_batch(devices_db: str) -> None:
    clock = Clock()
    store, connections = counting_store(devices_db, clock)
    params = store.get([DEMO, DEMO_214, "f2-00000000dead", DEMO])
    assert statements(connections) == 1
    assert params.devices == {DEMO, DEMO_214}
    strike = params.find(DEMO, "access-control-mode", "J1", "strike", "1")
    assert (strike.encoding_type, strike.units) == ("boolean", "state")
    sensor = params.find(DEMO, "sensor-mode", "J3", "sensor", "3")
    assert (sensor.scaling_factor, sensor.value_signed, sensor.value_width_bits) == (0.1, True, 16)
    doors = params.find(DEMO_214, "access-control-mode", "J4", "door-sensors", None)
    assert doors.encoding_type == "boolean_map"
    with pytest.raises(UnknownDeviceError):
        params.find("f2-00000000dead", "access-control-mode", "J1", "strike", "1")
    with pytest.raises(UnknownComponentError):
        params.find(DEMO, "access-control-mode", "J4", "strike", "4")


def test_cached_devices_are_not_queried_again_until_the_ttl_expires(devices_db: str) -> None:
    clock = Clock()
    store, connections = counting_store(devices_db, clock, ttl_seconds=60)
    store.get([DEMO])
    clock.now += 59
    assert store.get([DEMO]).devices == {DEMO}
    assert statements(connections) == 1
    store.get([DEMO, DEMO_214])  # only the new device is fetched, in one query
    assert statements(connections) == 2
    clock.now += 2
    store.get([DEMO, DEMO_214])  # DEMO expired: one query again
    assert statements(connections) == 3
    assert len(connections) == 1  # one connection, reused


def test_fresh_devices_are_read_again_whatever_the_cache_holds(devices_db: str) -> None:
    clock = Clock()
    store, connections = counting_store(devices_db, clock, ttl_seconds=60, negative_ttl_seconds=60)
    device = f"f2-{uuid.uuid4().hex[:12]}"
    assert store.get([device, DEMO]).devices == {DEMO}
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO device (device_id, model) VALUES (%s, 'F2-401')", (device,))
    assert store.get([device, DEMO]).devices == {DEMO}  # both cached: no query
    assert statements(connections) == 1
    # a redriven record's device is provisioned now: it is read at once, DEMO stays cached
    assert store.get([device, DEMO], fresh=[device, "f2-000000000000"]).devices == {device, DEMO}
    assert statements(connections) == 2
    assert store.get([device]).devices == {device}  # and the fresh answer is cached
    assert statements(connections) == 2


def test_a_device_provisioned_after_a_miss_decodes_after_the_negative_ttl(devices_db: str) -> None:
    clock = Clock()
    store, connections = counting_store(devices_db, clock, ttl_seconds=60, negative_ttl_seconds=5)
    device = f"f2-{uuid.uuid4().hex[:12]}"
    assert store.get([device]).devices == frozenset()
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO device (device_id, model) VALUES (%s, 'F2-401')", (device,))
    assert store.get([device]).devices == frozenset()  # still remembered as unknown
    clock.now += 5
    params = store.get([device])
    assert params.find(device, "sensor-mode", "J2", "sensor", "4").units == "hPa"
    assert statements(connections) == 2


def test_store_reconnects_when_its_connection_was_killed(devices_db: str) -> None:
    clock = Clock()
    store, connections = counting_store(devices_db, clock, ttl_seconds=0)
    store.get([DEMO])
    pid = connections[0].get_backend_pid()
    with psycopg2.connect(devices_db) as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    clock.now += 1
    assert store.get([DEMO]).devices == {DEMO}
    assert len(connections) == 2


def test_unreachable_database_is_a_store_error() -> None:
    def connect() -> Any:
        return psycopg2.connect(
            "host=127.0.0.1 port=1 user=x password=x dbname=x connect_timeout=2"
        )

    store = DeviceParameterStore(connect)
    with pytest.raises(StoreError, match="unavailable"):
        store.get([DEMO])
