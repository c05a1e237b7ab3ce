"""The local runtime's Kafka broker: produce/consume, keyed order, topics, restart, CLI tools."""

from __future__ import annotations

import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from f2lib.contracts.records import PIPELINE_TOPICS
from infra.deploy.docker.create_topics import config_changes
from infra.local.launch.kafka import KafkaServer, main
from infra.local.ports import free_port

pytestmark = pytest.mark.integration


def _producer(server: KafkaServer) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=server.bootstrap, acks="all", linger_ms=5)


def _consume(
    server: KafkaServer, topic: str, expected: int, group_id: str | None = None
) -> list[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of ``expected`` records read from the start of ``topic``."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=server.bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    records = []
    try:
        for message in consumer:
            records.append((message.partition, message.offset, message.key, message.value))
            if len(records) >= expected:
                break
        if group_id is not None:
            consumer.commit()
    finally:
        consumer.close()
    return records


@pytest.fixture
def topic(kafka: KafkaServer) -> Iterator[str]:
    """A fresh 3-partition topic, so tests never read what other tests wrote."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    assert kafka.create_topics([name], partitions=3) == [name]
    yield name
    with kafka.admin() as admin:
        admin.delete_topics([name])


def test_round_trip__every_record_produced_with_acks_all_is_consumed(
    kafka: KafkaServer, topic: str
) -> None:
    producer = _producer(kafka)
    sent = {f"value-{i}".encode() for i in range(200)}
    metadata = [
        producer.send(topic, key=b"f2-0000000000%02d" % (i % 7), value=value)
        for i, value in enumerate(sorted(sent))
    ]
    producer.flush()
    offsets = [future.get(timeout=10) for future in metadata]
    producer.close()

    assert all(record.offset >= 0 for record in offsets)
    received = _consume(kafka, topic, expected=len(sent), group_id=f"g-{topic}")
    assert {value for _, _, _, value in received} == sent
    assert len(received) == len(sent)


def test_keyed_records__keep_their_order_within_one_partition(
    kafka: KafkaServer, topic: str
) -> None:
    keys = [f"f2-{i:012x}".encode() for i in range(8)]
    producer = _producer(kafka)
    for sequence in range(50):
        for key in keys:
            producer.send(topic, key=key, value=b"%d" % sequence)
    producer.flush()
    producer.close()

    received = _consume(kafka, topic, expected=50 * len(keys))
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    sequences_by_key: dict[bytes, list[int]] = defaultdict(list)
    for partition, _offset, key, value in sorted(received, key=lambda r: (r[0], r[1])):
        assert key is not None
        partitions_by_key[key].add(partition)
        sequences_by_key[key].append(int(value))
    assert all(len(partitions) == 1 for partitions in partitions_by_key.values())
    assert {key: sequences for key, sequences in sequences_by_key.items()} == {
        key: list(range(50)) for key in keys
    }
    assert len({p for parts in partitions_by_key.values() for p in parts}) > 1


def test_pipeline_topics__exist_with_three_partitions(kafka: KafkaServer) -> None:
    assert set(PIPELINE_TOPICS) <= set(kafka.list_topics())
    with kafka.admin() as admin:
        described = admin.describe_topics(list(PIPELINE_TOPICS))
    assert {t["name"]: len(t["partitions"]) for t in described} == dict.fromkeys(PIPELINE_TOPICS, 3)


def test_create_topics__is_idempotent(kafka: KafkaServer) -> None:
    assert kafka.create_topics(PIPELINE_TOPICS) == []


def test_create_topics__sets_the_configs_on_new_and_existing_topics(kafka: KafkaServer) -> None:
    fresh, kept = f"test_{uuid.uuid4().hex[:12]}", f"test_{uuid.uuid4().hex[:12]}"
    assert kafka.create_topics([kept], partitions=1) == [kept]
    configs = {fresh: {"retention.ms": "86400000"}, kept: {"retention.ms": "172800000"}}
    assert kafka.create_topics([fresh, kept], partitions=1, configs=configs) == [fresh]
    with kafka.admin() as admin:
        assert config_changes(admin, configs) == {}
        admin.delete_topics([fresh, kept])


def test_auto_topic_creation__is_disabled(kafka: KafkaServer) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap)
    try:
        consumer.partitions_for_topic(f"typo_{uuid.uuid4().hex[:8]}")
    finally:
        consumer.close()
    assert not any(name.startswith("typo_") for name in kafka.list_topics())


def test_topics_cli_tool__lists_the_pipeline_topics(kafka: KafkaServer) -> None:
    argv = kafka.tool_argv("topics", "--bootstrap-server", kafka.bootstrap, "--list")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert set(PIPELINE_TOPICS) <= set(result.stdout.split())


def test_consumer_groups_cli_tool__describes_a_committed_group(
    kafka: KafkaServer, topic: str
) -> None:
    producer = _producer(kafka)
    for i in range(6):
        producer.send(topic, value=b"%d" % i)
    producer.flush()
    producer.close()
    group = f"g-{topic}"
    _consume(kafka, topic, expected=6, group_id=group)

    argv = kafka.tool_argv(
        "consumer-groups", "--bootstrap-server", kafka.bootstrap, "--describe", "--group", group
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(group)]
    assert sorted(row[2] for row in rows) == ["0", "1", "2"]
    assert all(row[5] == "0" for row in rows)  # LAG column: everything committed


def test_module_cli__prints_the_tool_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["argv", "console-consumer", "--topic", "raw_iot_data"]) == 0
    printed = capsys.readouterr().out
    assert "org.apache.kafka.tools.consumer.ConsoleConsumer --topic raw_iot_data" in printed
    assert "/kafka/libs/*" in printed


def test_restart__keeps_topics_records_and_committed_offsets(tmp_path: Path) -> None:
    server = KafkaServer(tmp_path / "kafka", free_port(), partitions=2, heap="256m")
    server.start()
    try:
        server.create_topics(["durable"])
        producer = _producer(server)
        for i in range(30):
            producer.send("durable", key=b"k%d" % (i % 3), value=b"%d" % i)
        producer.flush()
        producer.close()
        _consume(server, "durable", expected=20, group_id="restart-group")
        controller_port = server.controller_port
    finally:
        server.stop()

    server.start()
    try:
        assert server.controller_port == controller_port
        assert server.list_topics() == ["durable"]
        received = _consume(server, "durable", expected=30)
        assert sorted(int(value) for _, _, _, value in received) == list(range(30))
        consumer = KafkaConsumer(
            bootstrap_servers=server.bootstrap, group_id="restart-group", enable_auto_commit=False
        )
        try:
            committed = sum(consumer.committed(TopicPartition("durable", p)) or 0 for p in (0, 1))
        finally:
            consumer.close()
        assert committed == 20
    finally:
        server.stop()
