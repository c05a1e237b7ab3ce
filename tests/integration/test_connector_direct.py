"""The connector in direct mode drives the real decode and sink replicas, no gateway in the path.

What the Helm chart's kubernetes runtime runs, on one machine: decode and sink served from their
build contexts (``build/<fn>/``, the template's ``python index.py``, as the local runtime starts
a replica) on loopback ports standing in for their Services, and ``python -m
infra.services.connector`` with ``CONNECTOR_FUNCTIONS_FILE`` naming a static list of those URLs
(the entries ``infra.deploy.k8s_functions.connector_entry`` makes, as the chart's ConfigMap
holds them). ``GATEWAY_URL`` points at a port where nothing listens and no gateway password
exists: a listing or an invocation through a gateway could not succeed. Real Kafka and
PostgreSQL; topics and consumer groups of the test's own.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from f2lib.contracts.records import RawRecord
from f2lib.kafka import make_producer
from infra.deploy.k8s_functions import connector_entry
from infra.deploy.stackfile import FunctionSpec, StackFile
from infra.local.buildctx import build_context
from infra.local.launch.kafka import KafkaServer
from infra.local.ports import free_port
from infra.local.process import ManagedProcess, log_tail
from tests.pipeline_support import component_name, payload_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STACK = StackFile.load(ROOT / "stack.yml")
COMPONENT_KINDS = {
    "strike", "door-sensors", "reader", "exit-buttons", "siren", "motion-sensor", "sensor",
}  # fmt: skip


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


class Replica:
    """One function served from its build context on a loopback port (a Service stand-in)."""

    def __init__(self, spec: FunctionSpec, build_dir: Path, secrets: dict[str, str]) -> None:
        self.spec = spec
        self.port = free_port()
        context = build_context(STACK, spec, build_dir)
        secrets_dir = build_dir / f"{spec.name}-secrets"
        secrets_dir.mkdir(mode=0o700)
        for name in spec.secrets:
            (secrets_dir / name).write_text(secrets[name])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(build_dir),
            **spec.environment,
            "F2_UPSTREAM_HOST": "127.0.0.1",
            "F2_UPSTREAM_PORT": str(self.port),
            "F2_SECRETS_DIR": str(secrets_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self.process = ManagedProcess(
            spec.name, [sys.executable, "index.py"], build_dir / f"{spec.name}.log", env=env,
            cwd=context,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Replica:
        self.process.start()
        self.process.wait_ready(
            lambda: requests.get(f"{self.url}_/ready", timeout=2).status_code == 200, timeout=60
        )
        return self

    def invocations(self) -> float:
        """Answers this replica gave (its own f2_function_invocations_total)."""
        text = requests.get(f"{self.url}_/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("f2_function_invocations_total{")
        )


@pytest.fixture
def topics(kafka: KafkaServer) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {"raw": f"raw-{suffix}", "decoded": f"decoded-{suffix}", "dead": f"dlq-{suffix}"}
    kafka.create_topics(list(names.values()), partitions=3)
    return names


@pytest.fixture
def replicas(
    tmp_path: Path, kafka: KafkaServer, devices_db: str, timeseries_db: str, topics: dict[str, str]
) -> Iterator[dict[str, Replica]]:
    """decode and sink with stack.yml's environment, fed the test's topics and services."""
    specs = {
        "decode": replace(
            STACK.functions["decode"],
            annotations={"topic": topics["raw"]},
            environment={
                **STACK.functions["decode"].environment,
                "KAFKA_BOOTSTRAP": kafka.bootstrap,
                "DECODED_TOPIC": topics["decoded"],
                "DEAD_LETTER_TOPIC": topics["dead"],
            },
        ),
        "sink": replace(
            STACK.functions["sink"],
            annotations={"topic": topics["decoded"]},
            environment={
                **STACK.functions["sink"].environment,
                "KAFKA_BOOTSTRAP": kafka.bootstrap,
                "DEAD_LETTER_TOPIC": topics["dead"],
            },
        ),
    }
    secrets = {"devices-dsn": devices_db, "timeseries-dsn": timeseries_db}
    started: dict[str, Replica] = {}
    try:
        for name, spec in specs.items():
            started[name] = Replica(spec, tmp_path / "build", secrets).start()
        yield started
    finally:
        for replica in started.values():
            replica.process.stop(timeout=20)


@pytest.fixture
def connector(
    tmp_path: Path, kafka: KafkaServer, topics: dict[str, str], replicas: dict[str, Replica]
) -> Iterator[tuple[ManagedProcess, int]]:
    functions_file = tmp_path / "functions.json"
    entries = [connector_entry(r.spec, r.url, replicas=1) for r in replicas.values()]
    functions_file.write_text(json.dumps(entries))
    no_secrets = tmp_path / "no-secrets"
    no_secrets.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
        "CONNECTOR_FUNCTIONS_FILE": str(functions_file),
        "GATEWAY_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "F2_SECRETS_DIR": str(no_secrets),  # and there is no gateway password
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "DEAD_LETTER_TOPIC": topics["dead"],
        "CONNECTOR_GROUP_PREFIX": f"f2-direct-{uuid.uuid4().hex[:6]}-",
        "CONNECTOR_HTTP_HOST": "127.0.0.1",
        "CONNECTOR_HTTP_PORT": str(port),
        "CONNECTOR_REFRESH_SECONDS": "1",
        "CONNECTOR_LINGER_MS": "50",
    }
    process = ManagedProcess(
        "connector", [sys.executable, "-m", "infra.services.connector"],
        tmp_path / "connector.log", env=env, cwd=ROOT,
    ).start()  # fmt: skip
    try:
        process.wait_ready(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, timeout=60
        )
        yield process, port
    finally:
        process.stop(timeout=30)


def new_device(devices_db: str) -> str:
    device_id = f"f2-0d{uuid.uuid4().hex[:10]}"
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO device (device_id, model, serial_number) VALUES (%s, 'F2-403', %s)",
            (device_id, f"DIRECT-{device_id}"),
        )
    conn.close()
    return device_id


def parameters(devices_db: str, device_id: str) -> list[dict[str, Any]]:
    with psycopg2.connect(devices_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT connector_mode, connector, component_type, component_id, encoding_type,"
            " units, scaling_factor FROM device_parameters WHERE device_id = %s"
            " ORDER BY connector, component_type, component_id",
            (device_id,),
        )
        cols = [c.name for c in cur.description]
        found = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    conn.close()
    return found


def rows(timeseries_db: str, device_id: str) -> list[dict[str, Any]]:
    with psycopg2.connect(timeseries_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT component_type, component_id, value, value_text, unit, topic"
            " FROM iot_measurements WHERE device_id = %s ORDER BY topic, component_id",
            (device_id,),
        )
        cols = [c.name for c in cur.description]
        found = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    conn.close()
    return found


def test_direct_mode__static_list_drives_decode_and_sink_to_rows_for_every_component_kind(
    kafka: KafkaServer,
    devices_db: str,
    timeseries_db: str,
    topics: dict[str, str],
    replicas: dict[str, Replica],
    connector: tuple[ManagedProcess, int],
) -> None:
    process, port = connector
    device = new_device(devices_db)
    params = parameters(devices_db, device)
    assert {p["component_type"] for p in params} >= COMPONENT_KINDS
    expected: dict[tuple[str, str], tuple[Any, Any]] = {}
    producer = make_producer(kafka.bootstrap)
    try:
        for i, param in enumerate(params):
            mqtt_topic = (
                f"cmnd/{device}/{param['connector_mode']}/{param['connector']}/"
                f"{component_name(param)}"
            )
            payload, produced = payload_for(param, i)
            record = RawRecord(topic=mqtt_topic, payload=json.dumps(payload))
            producer.send(topics["raw"], key=device.encode(), value=record.to_bytes())
            for cid, value in produced:
                expected[(mqtt_topic, cid)] = (value, param["units"])
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)

    stored = wait_for(
        lambda: (found := rows(timeseries_db, device)) and len(found) >= len(expected) and found,
        timeout=90,
        what=f"rows not stored; connector log:\n{log_tail(process.log_path)}",
    )
    got = {(r["topic"], r["component_id"]): r for r in stored}
    assert set(got) == set(expected)
    assert {r["component_type"] for r in stored} >= COMPONENT_KINDS
    for key, (value, unit) in expected.items():
        row = got[key]
        assert row["unit"] == unit, key
        if isinstance(value, str):
            assert row["value_text"] == value and row["value"] is None, key
        else:
            assert row["value"] == pytest.approx(value), key

    # The batches reached each replica at its own URL; the connector listed from the file.
    assert replicas["decode"].invocations() >= 1
    assert replicas["sink"].invocations() >= 1
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    assert health["consumers"] == {"decode": True, "sink": True}
    log = process.log_path.read_text()
    assert "direct mode" in log and "GatewayError" not in log
