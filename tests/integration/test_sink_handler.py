"""The sink function's handler against real PostgreSQL and Kafka: stored after commit, counted,
duplicate-free, invalid records dead-lettered (stage sink) while the rest are stored."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg2
import pytest

from f2lib.contracts.marks import Marks, Reprocess
from f2lib.models import Measurement
from infra.local.launch.kafka import KafkaServer
from tests.integration.handler_support import Event, load_handler
from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2023, 5, 26, 18, 34, 4, 928538, tzinfo=UTC)


def new_device() -> str:
    return f"f2-{uuid.uuid4().hex[:12]}"


def decoded_values(device: str, n: int) -> list[dict[str, Any]]:
    return [
        json.loads(
            Measurement(
                time=T0 + timedelta(seconds=i),
                device_id=device,
                connector_mode="alarm-mode",
                connector="J2",
                component_type="motion-sensor",
                component_id="1",
                value=float(i % 2),
                unit="presence",
                topic=f"cmnd/{device}/alarm-mode/J2/motion-sensor-1",
            ).model_dump_json()
        )
        for i in range(n)
    ]


def batch_body(values: list[Any], key: str | None = None) -> bytes:
    return json.dumps(
        [
            {"topic": "decoded_iot_data", "partition": 1, "offset": 100 + i, "key": key, "value": v}
            for i, v in enumerate(values)
        ]
    ).encode()


def stored(dsn: str, device: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM iot_measurements WHERE device_id = %s", (device,))
        row = cur.fetchone()
        return int(row[0]) if row else 0


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(response["body"]))


@pytest.fixture
def dead_topic(kafka: KafkaServer) -> str:
    name = f"dead_letter_test_{uuid.uuid4().hex[:8]}"
    kafka.create_topics([name], partitions=1)
    return name


@pytest.fixture
def sink_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kafka: KafkaServer,
    timeseries_db: str,
    dead_topic: str,
) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "timeseries-dsn").write_text(timeseries_db)
    monkeypatch.setenv("F2_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("TIMESERIES_DSN", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("DEAD_LETTER_TOPIC", dead_topic)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_SECONDS", "2")
    return secrets


@pytest.fixture
def handler(sink_env: Path) -> Iterator[ModuleType]:
    module = load_handler("sink")
    yield module
    built = module._function.value
    if built is not None:
        built.sink.close()
        if built._producer is not None:
            built._producer.close(timeout=5)


def test_a_batch_is_stored_and_the_same_batch_again_adds_no_row(
    handler: ModuleType, timeseries_db: str
) -> None:
    device = new_device()
    body = batch_body(decoded_values(device, 25), key=device)
    first = handler.handle(Event(body), None)
    assert first["statusCode"] == 200
    assert body_of(first) == {"records": 25, "inserted": 25, "duplicates": 0, "dead_letters": 0}
    assert stored(timeseries_db, device) == 25
    again = handler.handle(Event(body), None)
    assert body_of(again) == {"records": 25, "inserted": 0, "duplicates": 25, "dead_letters": 0}
    assert stored(timeseries_db, device) == 25


def test_a_single_record_from_the_per_message_connector_is_stored(
    handler: ModuleType, timeseries_db: str
) -> None:
    device = new_device()
    [value] = decoded_values(device, 1)
    headers = {
        "X-Topic": "decoded_iot_data",
        "X-Kafka-Partition": "0",
        "X-Kafka-Offset": "3",
        "X-Kafka-Key": device,
    }
    response = handler.handle(Event(json.dumps(value).encode(), headers), None)
    assert body_of(response) == {"records": 1, "inserted": 1, "duplicates": 0, "dead_letters": 0}
    assert stored(timeseries_db, device) == 1


def test_invalid_records_are_dead_lettered_and_the_rest_stored(
    handler: ModuleType, kafka: KafkaServer, dead_topic: str, timeseries_db: str
) -> None:
    device = new_device()
    good = decoded_values(device, 3)
    invalid = [
        {**good[0], "value": None, "value_text": None},
        {**good[0], "time": "not a time"},
        {**good[0], "device_id": "someone"},
        "not json",
        42,
    ]
    response = handler.handle(Event(batch_body([*good, *invalid], key=device)), None)
    assert response["statusCode"] == 200
    assert body_of(response) == {"records": 8, "inserted": 3, "duplicates": 0, "dead_letters": 5}
    assert stored(timeseries_db, device) == 3
    records = read_topic(kafka.bootstrap, dead_topic, lambda rs: len(rs) >= 5, timeout=30)
    letters = [json.loads(m.value) for m in records]
    assert [(x["stage"], x["reason"]) for x in letters] == [("sink", "invalid_measurement")] * 5
    assert [x["record"] for x in letters] == invalid
    assert [x["source"]["offset"] for x in letters] == [103, 104, 105, 106, 107]
    assert all(x["error"] for x in letters)


@pytest.mark.parametrize("body", [b"[{", b'["x"]', b" "])
def test_a_malformed_batch_is_400(handler: ModuleType, body: bytes) -> None:
    response = handler.handle(Event(body), None)
    assert response["statusCode"] == 400
    assert body_of(response)["error"]


def test_unreachable_database_is_503_and_nothing_is_acknowledged(
    handler: ModuleType, sink_env: Path
) -> None:
    (sink_env / "timeseries-dsn").write_text(
        "host=127.0.0.1 port=1 user=x password=x dbname=x connect_timeout=2"
    )
    response = handler.handle(Event(batch_body(decoded_values(new_device(), 2))), None)
    assert response["statusCode"] == 503


def test_concurrent_invocations_use_their_own_connections(
    handler: ModuleType, timeseries_db: str
) -> None:
    devices = [new_device() for _ in range(4)]
    results: list[dict[str, Any]] = []

    def invoke(device: str) -> None:
        for start in range(0, 40, 10):
            body = batch_body(decoded_values(device, 40)[start : start + 10])
            results.append(handler.handle(Event(body), None))

    threads = [threading.Thread(target=invoke, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r["statusCode"] for r in results] == [200] * 16
    assert sum(body_of(r)["inserted"] for r in results) == 160
    assert [stored(timeseries_db, d) for d in devices] == [40] * 4


def test_decode_output_is_what_the_sink_stores(handler: ModuleType, timeseries_db: str) -> None:
    """The decoded value produced by decode (Measurement JSON) is accepted by sink unchanged."""
    from decode.decoding import decode_batch
    from decode.params import DataPointParams, DeviceParameters
    from f2lib.contracts.invocation import ConnectorRecord
    from f2lib.contracts.records import RawRecord

    device = new_device()
    params = DeviceParameters.from_rows(
        [
            DataPointParams(
                device, "access-control-mode", "J1", "reader", "1", "raw_string", units="text"
            )
        ]
    )
    raw = RawRecord(
        topic=f"cmnd/{device}/access-control-mode/J1/reader-1",
        payload=json.dumps(
            {"timestamp": "2023-05-26 17:24:28.808888", "data": "b'\"Hello World\"'"}
        ),
    )
    [m] = decode_batch([ConnectorRecord(value=raw.model_dump())], params).measurements
    response = handler.handle(Event(batch_body([json.loads(m.to_json_bytes())])), None)
    assert body_of(response)["inserted"] == 1
    with psycopg2.connect(timeseries_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT component_id, value, value_text, unit, time FROM iot_measurements"
            " WHERE device_id = %s",
            (device,),
        )
        assert cur.fetchall() == [
            ("1", None, '"Hello World"', "text", datetime(2023, 5, 26, 17, 24, 28, 808888, UTC))
        ]


def values_of(dsn: str, device: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, value, ingested_at FROM iot_measurements WHERE device_id = %s"
            " ORDER BY time",
            (device,),
        )
        return list(cur.fetchall())


def test_reprocess_records_overwrite_their_rows_and_plain_ones_never_do(
    handler: ModuleType, timeseries_db: str
) -> None:
    device = new_device()
    first = decoded_values(device, 10)
    assert body_of(handler.handle(Event(batch_body(first, key=device)), None))["inserted"] == 10
    before = values_of(timeseries_db, device)
    corrected = [{**v, "value": v["value"] * 10 + 1} for v in first]
    plain = handler.handle(Event(batch_body(corrected, key=device)), None)
    assert body_of(plain) == {"records": 10, "inserted": 0, "duplicates": 10, "dead_letters": 0}
    assert values_of(timeseries_db, device) == before  # a redelivery never changes a row
    marks = Marks(reprocess=Reprocess("run-s"))
    elements = json.loads(batch_body([*corrected[:6], *first[6:]], key=device))
    for element in elements:
        element["headers"] = marks.header_values()
    body = json.dumps(elements).encode()
    response = handler.handle(Event(body), None)
    assert response["statusCode"] == 200
    assert body_of(response) == {
        "records": 10,
        "inserted": 0,
        "duplicates": 0,
        "dead_letters": 0,
        "updated": 6,
        "unchanged": 4,
    }
    after = values_of(timeseries_db, device)
    assert len(after) == 10
    assert [row[1] for row in after] == [v["value"] for v in corrected[:6] + first[6:]]
    assert [row[2] for row in after[6:]] == [row[2] for row in before[6:]]  # untouched
    assert all(a[2] > b[2] for a, b in zip(after[:6], before[:6], strict=True))
    again = handler.handle(Event(body), None)
    assert (body_of(again)["updated"], body_of(again)["unchanged"]) == (0, 10)
