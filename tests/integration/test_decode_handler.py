"""The decode function's handler against real Kafka and PostgreSQL: batch or single record in,
decoded records and dead letters out, acknowledged before 200; 400/405/500/503 for the rest."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from f2lib.contracts.marks import Failure, Marks, Position, Redrive, Reprocess
from f2lib.contracts.records import RawRecord
from f2lib.models import Measurement
from infra.local.launch.kafka import KafkaServer
from tests.device_templates import add_device, copy_default_template, set_scaling_factor
from tests.integration.handler_support import Event, load_handler
from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration

DEVICE = "f2-e4fd45f654be"  # demo F2-403: every component kind
TS = "2023-05-26 18:34:04.928538"


def consume(kafka: KafkaServer, topic: str, expected: int, timeout_ms: int = 15_000) -> list[Any]:
    """The first ``expected`` records of ``topic`` (fewer if they do not come in time)."""
    records = read_topic(kafka.bootstrap, topic, lambda rs: len(rs) >= expected, timeout_ms / 1000)
    return records[:expected]


def raw(component: str, payload: Any, mode: str, connector: str, device: str = DEVICE) -> dict:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return RawRecord(
        topic=f"cmnd/{device}/{mode}/{connector}/{component}",
        payload=text,
        received_at="2023-05-26T18:34:05+00:00",
    ).model_dump()


def batch_body(values: list[dict]) -> bytes:
    return json.dumps(
        [
            {"topic": "raw_iot_data", "partition": 0, "offset": i, "key": DEVICE, "value": v}
            for i, v in enumerate(values)
        ]
    ).encode()


EVERY_KIND = [
    raw("strike-1", {"timestamp": TS, "status": True}, "access-control-mode", "J1"),
    raw(
        "door-sensors",
        {"timestamp": TS, "door-sensor-1": False, "door-sensor-2": True},
        "access-control-mode",
        "J1",
    ),
    raw("reader-1", {"timestamp": TS, "data": "b'\"Hello World\"'"}, "access-control-mode", "J1"),
    raw("exit-buttons", {"timestamp": TS, "exit-button-1": True}, "access-control-mode", "J1"),
    raw("siren-1", {"timestamp": TS, "status": False}, "alarm-mode", "J2"),
    raw("motion-sensor-1", {"timestamp": TS, "status": True}, "alarm-mode", "J2"),
    raw("sensor-3", {"timestamp": TS, "data": "0117"}, "sensor-mode", "J3"),
]


@pytest.fixture
def topics(kafka: KafkaServer) -> dict[str, str]:
    """Fresh decoded and dead-letter topics, so this test reads only what it produced."""
    suffix = uuid.uuid4().hex[:8]
    names = {"decoded": f"decoded_test_{suffix}", "dead": f"dead_letter_test_{suffix}"}
    kafka.create_topics(names.values(), partitions=1)
    return names


@pytest.fixture
def decode_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kafka: KafkaServer,
    devices_db: str,
    topics: dict[str, str],
) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "devices-dsn").write_text(devices_db)
    monkeypatch.setenv("F2_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("DEVICES_DSN", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("DECODED_TOPIC", topics["decoded"])
    monkeypatch.setenv("DEAD_LETTER_TOPIC", topics["dead"])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_SECONDS", "2")
    return secrets


@pytest.fixture
def handler(decode_env: Path) -> Iterator[ModuleType]:
    module = load_handler("decode")
    yield module
    built = module._function.value
    if built is not None:
        built.producer.close(timeout=5)
        built.store.close()


def test_a_batch_of_every_component_kind_is_decoded_and_acknowledged(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str]
) -> None:
    response = handler.handle(Event(batch_body(EVERY_KIND)), None)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"records": 7, "measurements": 8, "dead_letters": 0}
    messages = consume(kafka, topics["decoded"], 8)
    assert {m.key for m in messages} == {DEVICE.encode()}
    decoded = [Measurement.model_validate_json(m.value) for m in messages]
    by_component = {(d.component_type, d.component_id): d for d in decoded}
    assert by_component[("strike", "1")].value == 1.0
    assert by_component[("door-sensors", "door-sensor-1")].value == 0.0
    assert by_component[("door-sensors", "door-sensor-2")].value == 1.0
    assert by_component[("reader", "1")].value_text == '"Hello World"'
    assert by_component[("exit-buttons", "exit-button-1")].value == 1.0
    assert by_component[("siren", "1")].value == 0.0
    assert by_component[("motion-sensor", "1")].unit == "presence"
    sensor = by_component[("sensor", "3")]
    assert sensor.value == pytest.approx(27.9) and sensor.unit == "celsius"
    assert consume(kafka, topics["dead"], 1, timeout_ms=2_000) == []


def test_each_bad_input_class_is_dead_lettered_and_the_good_record_still_decoded(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str]
) -> None:
    bad = {
        "unknown_device": raw(
            "strike-1",
            {"timestamp": TS, "status": True},
            "access-control-mode",
            "J1",
            device="f2-00000000dead",
        ),
        "unknown_component": raw(
            "strike-4", {"timestamp": TS, "status": True}, "access-control-mode", "J1"
        ),
        "bad_payload": raw("strike-1", "{not json", "access-control-mode", "J1"),
        "decoding_failed": raw("sensor-3", {"timestamp": TS, "data": "xyz"}, "sensor-mode", "J3"),
        "bad_timestamp": raw("siren-1", {"status": True}, "alarm-mode", "J2"),
        "bad_topic": raw("strike-1", {"timestamp": TS, "status": True}, "party-mode", "J1"),
    }
    values = [*bad.values(), EVERY_KIND[0]]
    response = handler.handle(Event(batch_body(values)), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"records": 7, "measurements": 1, "dead_letters": 6}
    letters = [json.loads(m.value) for m in consume(kafka, topics["dead"], 6)]
    assert sorted(letter["reason"] for letter in letters) == sorted(bad)
    for letter in letters:
        assert letter["stage"] == "decode"
        assert letter["error"]
        assert letter["record"] == bad[letter["reason"]]
        assert letter["source"]["topic"] == "raw_iot_data"
    [good] = consume(kafka, topics["decoded"], 1)
    assert Measurement.model_validate_json(good.value).component_type == "strike"


def test_a_single_record_with_openfaas_headers_decodes_like_a_batch(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str]
) -> None:
    value = EVERY_KIND[1]  # door-sensors: two measurements
    headers = {
        "X-Topic": "raw_iot_data",
        "X-Kafka-Partition": "2",
        "X-Kafka-Offset": "17",
        "X-Kafka-Key": DEVICE,
    }
    response = handler.handle(Event(json.dumps(value).encode(), headers), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"records": 1, "measurements": 2, "dead_letters": 0}
    single = [
        Measurement.model_validate_json(m.value) for m in consume(kafka, topics["decoded"], 2)
    ]
    response = handler.handle(Event(batch_body([value])), None)
    assert json.loads(response["body"])["measurements"] == 2
    both = [Measurement.model_validate_json(m.value) for m in consume(kafka, topics["decoded"], 4)]
    assert both[2:] == single


def test_a_single_record_that_is_not_json_is_dead_lettered_not_refused(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str]
) -> None:
    response = handler.handle(Event(b"garbage", {"X-Kafka-Offset": "5"}), None)
    assert response["statusCode"] == 200
    [letter] = consume(kafka, topics["dead"], 1)
    value = json.loads(letter.value)
    assert (value["reason"], value["record"], value["source"]["offset"]) == (
        "bad_payload",
        "garbage",
        5,
    )


@pytest.mark.parametrize("body", [b'[{"value": ', b"[42]", b""])
def test_a_malformed_batch_is_400_with_a_json_error(handler: ModuleType, body: bytes) -> None:
    response = handler.handle(Event(body), None)
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"])["error"]
    assert handler._function.value is None  # refused before any connection was made


def test_only_post_is_accepted(handler: ModuleType) -> None:
    assert handler.handle(Event(b"", method="GET"), None)["statusCode"] == 405


def test_config_is_built_once_per_process(handler: ModuleType) -> None:
    handler.handle(Event(batch_body([EVERY_KIND[0]])), None)
    first = handler._function.value
    handler.handle(Event(batch_body([EVERY_KIND[0]])), None)
    assert first is not None and handler._function.value is first


def test_unreachable_kafka_is_503_and_recovers_on_a_later_call(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch, kafka: KafkaServer
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:1")
    response = handler.handle(Event(batch_body(EVERY_KIND)), None)
    assert response["statusCode"] == 503
    assert handler._function.value is None
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka.bootstrap)
    assert handler.handle(Event(batch_body(EVERY_KIND)), None)["statusCode"] == 200


def test_unreachable_device_database_is_503(handler: ModuleType, decode_env: Path) -> None:
    (decode_env / "devices-dsn").write_text(
        "host=127.0.0.1 port=1 user=x password=x dbname=x connect_timeout=2"
    )
    response = handler.handle(Event(batch_body(EVERY_KIND)), None)
    assert response["statusCode"] == 503
    assert "unavailable" in json.loads(response["body"])["error"]


def test_a_missing_secret_is_500_without_details(handler: ModuleType, decode_env: Path) -> None:
    (decode_env / "devices-dsn").unlink()
    response = handler.handle(Event(batch_body(EVERY_KIND)), None)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "function misconfigured"}


def marked_body(values: list[dict], marks: Marks, key: str = DEVICE) -> bytes:
    return json.dumps(
        [
            {"topic": "raw_iot_data", "partition": 0, "offset": i, "key": key, "value": v,
             "headers": marks.header_values()}
            for i, v in enumerate(values)
        ]
    ).encode()  # fmt: skip


def test_a_reprocessed_record_is_decoded_with_fresh_parameters_and_keeps_its_mark(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str], devices_db: str
) -> None:
    template = copy_default_template(devices_db, "F2-401")
    device = f"f2-{uuid.uuid4().hex[:12]}"
    add_device(devices_db, device, "F2-401", template)
    value = raw("sensor-1", {"timestamp": TS, "data": "00fa"}, "sensor-mode", "J1", device=device)
    assert handler.handle(Event(batch_body([value])), None)["statusCode"] == 200
    set_scaling_factor(devices_db, template, "J1", "sensor", "1", 1.0)
    assert handler.handle(Event(batch_body([value])), None)["statusCode"] == 200  # cached 0.1
    marks = Marks(reprocess=Reprocess("run-a", Position("raw_iot_data", 0, 0)))
    response = handler.handle(Event(marked_body([value], marks, device)), None)
    assert json.loads(response["body"]) == {"records": 1, "measurements": 1, "dead_letters": 0}
    records = consume(kafka, topics["decoded"], 3)
    values = [Measurement.model_validate_json(r.value).value for r in records]
    assert values == [pytest.approx(25.0), pytest.approx(25.0), pytest.approx(250.0)]
    assert [Marks.from_kafka(r.headers) for r in records] == [Marks(), Marks(), marks]


def test_a_redriven_record_that_fails_again_is_dead_lettered_with_its_count_and_history(
    handler: ModuleType, kafka: KafkaServer, topics: dict[str, str]
) -> None:
    where = Position("iot_dead_letter", 1, 12)
    first = Failure("decode", "unknown_device", "no decoding parameters", None, where)
    marks = Marks(Redrive(1, where, (first,)))
    value = raw("strike-4", {"timestamp": TS, "status": True}, "access-control-mode", "J1")
    response = handler.handle(Event(marked_body([value], marks)), None)
    assert json.loads(response["body"]) == {"records": 1, "measurements": 0, "dead_letters": 1}
    [record] = consume(kafka, topics["dead"], 1)
    letter = json.loads(record.value)
    assert (letter["stage"], letter["reason"]) == ("decode", "unknown_component")
    assert letter["redrive"] == {"count": 1, "dead_letter": where.to_json()}
    assert [(h["stage"], h["reason"]) for h in letter["history"]] == [("decode", "unknown_device")]
