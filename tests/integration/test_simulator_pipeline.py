"""The simulator against the whole local stack (the ``local_stack`` session fixture: a private
folder, free ports): a few devices of every model (fixed seed) provision through the gateway,
publish over mTLS, and every message the simulator reports as acknowledged is in
``iot_measurements`` exactly once, with as many rows as it has measurements."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
from pydantic import SecretStr

from f2lib.contracts.devices import MODELS
from f2lib.contracts.functions import consumer_group
from f2lib.contracts.records import DECODED_TOPIC, RAW_TOPIC
from infra.local.ports import port_open
from infra.local.stack import LocalStack
from infra.tools.simulator import Fleet, FleetConfig, FleetReport, parse_mix
from tests.kafka_support import uncommitted
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SEED = 5
PER_MODEL = 2
MESSAGES = 16  # every component of the largest template (F2-214) once, more for the others
PIPELINE_TIMEOUT = 180.0


def _config(stack: LocalStack, cert_dir: Path) -> FleetConfig:
    env = stack.env()
    assert port_open(int(env["MQTT_TLS_PORT"])), (
        f"the local stack must open Mosquitto's mTLS listener (MQTT_TLS_PORT="
        f"{env['MQTT_TLS_PORT']} is closed)"
    )
    assert Path(env["CA_CERT"]).exists(), f"the local stack has no CA certificate {env['CA_CERT']}"
    return FleetConfig(
        mix=parse_mix("all", PER_MODEL * len(MODELS)),
        seed=SEED,
        rate=8.0,
        qos=1,
        cert_dir=cert_dir,
        gateway_url=env["GATEWAY_URL"],
        provision_token=SecretStr(env["PROVISION_TOKEN"]),
        mqtt_host=env["MQTT_HOST"],
        mqtt_port=int(env["MQTT_TLS_PORT"]),
        ca_cert=Path(env["CA_CERT"]),
        devices_dsn=SecretStr(env["DEVICES_DSN"]),
    )


EXPECTED_ROWS = """
SELECT e.topic, e.ts, e.n, count(m.time) AS found
FROM unnest(%s::text[], %s::text[], %s::int[]) AS e (topic, ts, n)
LEFT JOIN iot_measurements m
       ON m.topic = e.topic AND m.time = (e.ts || '+00')::timestamptz
GROUP BY e.topic, e.ts, e.n
"""


def _stored(dsn: str, report: FleetReport) -> list[tuple[str, str, int, int]]:
    acked = report.acknowledged
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            EXPECTED_ROWS,
            (
                [m.topic for m in acked],
                [m.timestamp for m in acked],
                [m.measurements for m in acked],
            ),
        )
        return list(cur.fetchall())


def _rows_of(dsn: str, device_ids: list[str]) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM iot_measurements WHERE device_id = ANY(%s)", (device_ids,)
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0


def test_every_acknowledged_message_is_stored_exactly_once(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    stack = local_stack
    fleet = Fleet(_config(stack, tmp_path / "devices"))
    fleet.provision_all()

    report = fleet.run(messages=MESSAGES)

    totals = report.to_dict()["totals"]
    assert report.complete, report.to_dict()["devices"]
    assert totals["acked"] == MESSAGES * PER_MODEL * len(MODELS)
    dsn = stack.env()["TIMESERIES_DSN"]
    expected = sum(m.measurements for m in report.acknowledged)
    device_ids = [i.device_id for i in fleet.identities]
    wait_for(
        lambda: _rows_of(dsn, device_ids) >= expected,
        timeout=PIPELINE_TIMEOUT,
        interval=0.5,
        message=lambda: f"{_rows_of(dsn, device_ids)} of {expected} rows stored",
    )
    # Rows beyond the acknowledged messages (repeats) would come from records decode or sink
    # has not committed yet: wait until both have committed everything their topics hold.
    bootstrap = stack.env()["KAFKA_BOOTSTRAP"]
    wait_for(
        lambda: (
            uncommitted(bootstrap, consumer_group("decode"), RAW_TOPIC) == 0
            and uncommitted(bootstrap, consumer_group("sink"), DECODED_TOPIC) == 0
        ),
        timeout=PIPELINE_TIMEOUT,
        interval=0.5,
        message="decode and sink never committed every record of their topics",
    )
    rows = _stored(dsn, report)
    missing = [(t, ts) for t, ts, n, found in rows if found == 0]
    wrong = [(t, ts, n, found) for t, ts, n, found in rows if 0 < found != n]
    assert not missing, f"{len(missing)} acknowledged messages not stored, e.g. {missing[:3]}"
    assert not wrong, f"messages stored with the wrong number of rows: {wrong[:3]}"
    assert _rows_of(dsn, device_ids) == expected, "rows beyond the acknowledged messages"
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT device_id FROM iot_measurements WHERE device_id = ANY(%s)",
            (device_ids,),
        )
        assert {r[0] for r in cur.fetchall()} == set(device_ids), "a model stored nothing"
