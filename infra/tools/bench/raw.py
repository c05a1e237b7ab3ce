"""Raw limits of each stage with the components alone, on the same input as the pipeline.

* MQTT: one paho publisher -> Mosquitto -> one paho subscriber, QoS 1, on ``bench/...`` topics
  (the bridge subscribes ``cmnd/#`` only, so the pipeline stays idle).
* Kafka: one kafka-python producer (the project's producer settings) and one consumer, on a
  topic of its own with the pipeline's partition count, values as the bridge makes them.
* PostgreSQL: ``psql -c "\\copy ..."`` of the pipeline's rows (COPY text format) into a table
  shaped like ``iot_measurements`` (indexes and the natural key included).
* Decode core: ``decode.decoding.decode_batch`` over in-memory batches, in one process (one
  core) and in one process per core at once.
The sink's own write path (``TimescaleSink.write``) is timed here too, in process, on the same
rows: the database cost of the sink without HTTP and validation.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg2
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from psycopg2 import sql
from pydantic import SecretStr

from decode.decoding import decode_batch, devices_of
from decode.params import DeviceParameters, DeviceParameterStore
from f2lib.contracts.invocation import ConnectorRecord, parse_invocation
from f2lib.contracts.records import RAW_TOPIC
from f2lib.errors import BenchError
from f2lib.kafka import KafkaClient, make_producer
from f2lib.kafka.confluent import ConfluentConsumer, consumer_config
from f2lib.models import MEASUREMENT_COLUMNS, Measurement
from f2lib.mqtt import paho_client
from infra.tools.bench.publisher import PublishPlan, publish
from infra.tools.bench.stats import rate
from infra.tools.bench.workload import Fleet, messages, raw_value
from sink.timeseries import TimescaleSink, copy_payload

logger = logging.getLogger(__name__)

RAW_KAFKA_TOPIC = "bench_raw_kafka"


@dataclass(frozen=True)
class StageRate:
    """A raw stage's figure: items in ``seconds``; ``unit`` says what an item is."""

    items: int
    seconds: float
    unit: str
    detail: dict[str, Any]

    @property
    def per_second(self) -> float:
        return rate(self.items, self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": self.per_second}


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


# --- MQTT ------------------------------------------------------------------------------------


def _subscribe_count(
    host: str,
    port: int,
    username: str,
    password: str,
    topic: str,
    count: int,
    timeout_s: float,
    ready_file: str,
) -> tuple[int, float, float]:
    """Receive ``count`` messages on ``topic`` at QoS 1: (received, first, last) wall times.
    ``ready_file`` is created once the subscription is granted."""
    lock = threading.Lock()
    got = threading.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0}
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        with lock:
            if state["n"] == 0:
                state["first"] = now
            state["n"] += 1
            state["last"] = now
            if state["n"] >= count:
                got.set()

    client = paho_client("f2-bench-raw-sub", username=username, password=SecretStr(password))
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    try:
        if not subscribed.wait(15):
            raise BenchError("raw MQTT subscriber was not subscribed within 15 s")
        Path(ready_file).touch()
        got.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return int(state["n"]), state["first"], state["last"]


def mqtt_raw(
    host: str, port: int, username: str, password: str, fleet: Fleet, count: int
) -> StageRate:
    """Publish ``count`` messages flat out; rate = count / (last received - first published)."""
    with _spawn_pool(2) as pool, tempfile.TemporaryDirectory(prefix="f2-bench-") as folder:
        ready = Path(folder) / "subscribed"
        sub = pool.submit(
            _subscribe_count, host, port, username, password, "bench/paho/#", count, 300.0,
            str(ready),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not ready.exists() and not sub.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        start_at = time.time() + 0.5
        plan = PublishPlan(
            host,
            port,
            username,
            password,
            fleet,
            count,
            rate=None,
            seed=11,
            client_id="f2-bench-raw-pub",
            topic_prefix="bench/paho/cmnd",
            start_at=start_at,
        )
        pub = pool.submit(publish, plan)
        published = pub.result()
        received, _first, last = sub.result()
    if received < count:
        raise BenchError(f"raw MQTT: {received} of {count} messages received")
    seconds = last - published.first_publish
    return StageRate(
        count,
        seconds,
        "messages",
        {
            "publish_only_per_second": rate(published.sent, published.publish_seconds),
            "acked": published.acked,
            "qos": 1,
            "max_inflight": plan.max_inflight,
        },
    )


# --- Kafka -----------------------------------------------------------------------------------


def _raw_values(fleet: Fleet, count: int, seed: int) -> list[tuple[bytes, bytes]]:
    out = []
    for message in itertools.islice(messages(fleet, seed), count):
        key = message.topic.split("/")[1].encode()
        out.append((key, json.dumps(raw_value(message), separators=(",", ":")).encode()))
    return out


def _kafka_produce(
    bootstrap: str, topic: str, fleet: Fleet, count: int, start_at: float, client: KafkaClient
) -> dict[str, float]:
    values = _raw_values(fleet, count, seed=12)
    producer = make_producer(bootstrap, client=client, client_id="f2-bench-raw-producer")
    time.sleep(max(0.0, start_at - time.time()))
    first = time.time()
    for key, value in values:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=120)
    done = time.time()
    producer.close(timeout=5)
    return {"first": first, "flushed": done, "bytes": float(sum(len(v) for _, v in values))}


def _kafka_consume(
    bootstrap: str, topic: str, count: int, timeout_s: float, client: KafkaClient
) -> tuple[int, float]:
    consumer: Any
    if client == "confluent":
        consumer = ConfluentConsumer(
            consumer_config(
                bootstrap=bootstrap, group_id=f"f2-bench-raw-{time.time_ns()}",
                client_id="f2-bench-raw-consumer", fetch_min_bytes=65_536,
                fetch_max_wait_ms=25, max_partition_fetch_bytes=1 << 20,
                fetch_max_bytes=16 << 20, max_poll_interval_ms=300_000,
            )
        )  # fmt: skip
        consumer.subscribe([topic])
    else:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            client_id="f2-bench-raw-consumer",
            fetch_min_bytes=65_536,
            fetch_max_wait_ms=25,
        )
    received = 0
    last = 0.0
    deadline = time.monotonic() + timeout_s
    while received < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            received += len(records)
            last = time.time()
    consumer.close()
    return received, last


def kafka_raw(
    bootstrap: str, partitions: int, fleet: Fleet, count: int, client: KafkaClient
) -> StageRate:
    """Produce ``count`` raw records and consume them through the seam (f2lib.kafka) with
    ``client``; rate = count / (last consumed - first produced). The producer uses the
    project's settings (acks=all, idempotent, linger 5 ms); the consumer fetches as the
    connector does (64 KiB or 25 ms). Each client on a topic of its own."""
    topic = f"{RAW_KAFKA_TOPIC}_{client.replace('-', '_')}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="f2-bench-admin")
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    time.sleep(1.0)
    with _spawn_pool(2) as pool:
        consumed = pool.submit(_kafka_consume, bootstrap, topic, count, 300.0, client)
        produced = pool.submit(
            _kafka_produce, bootstrap, topic, fleet, count, time.time() + 4.0, client
        ).result()
        received, last = consumed.result()
    if received < count:
        raise BenchError(f"raw Kafka: {received} of {count} records consumed")
    return StageRate(
        count,
        last - produced["first"],
        "records",
        {
            "produce_only_per_second": rate(count, produced["flushed"] - produced["first"]),
            "mean_value_bytes": produced["bytes"] / count,
            "partitions": partitions,
            "client": client,
        },
    )


# --- decoding (in memory) --------------------------------------------------------------------


def connector_records(fleet: Fleet, count: int, seed: int) -> list[ConnectorRecord]:
    """The decode function's input as the connector hands it over (values as the bridge made)."""
    return [
        ConnectorRecord(
            topic=RAW_TOPIC,
            partition=0,
            offset=n,
            key=m.topic.split("/")[1],
            value=raw_value(m),
        )
        for n, m in enumerate(itertools.islice(messages(fleet, seed), count))
    ]


def device_parameters(dsn: str, devices: Sequence[str]) -> DeviceParameters:
    store = DeviceParameterStore(lambda: psycopg2.connect(dsn))
    try:
        return store.get(devices)
    finally:
        store.close()


def _decode_worker(
    dsn: str, fleet: Fleet, count: int, batch: int, start_at: float
) -> tuple[int, float, float]:
    records = connector_records(fleet, count, seed=13)
    params = device_parameters(dsn, fleet.devices)
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    decoded = 0
    for offset in range(0, len(records), batch):
        result = decode_batch(records[offset : offset + batch], params)
        decoded += len(result.measurements)
        if result.dead_letters:
            raise BenchError(f"decode core dead-lettered {len(result.dead_letters)} records")
    return len(records), started, time.time()


def decode_core(dsn: str, fleet: Fleet, count: int, batch: int, processes: int) -> StageRate:
    """``processes`` processes decode ``count`` records each at the same time."""
    with _spawn_pool(processes) as pool:
        start_at = time.time() + 3.0
        futures = [
            pool.submit(_decode_worker, dsn, fleet, count, batch, start_at)
            for _ in range(processes)
        ]
        results = [f.result() for f in futures]
    total = sum(n for n, _, _ in results)
    seconds = max(end for _, _, end in results) - min(start for _, start, _ in results)
    return StageRate(total, seconds, "messages", {"processes": processes, "batch": batch})


def decode_handler_core(dsn: str, fleet: Fleet, count: int, batch: int) -> StageRate:
    """The decode function's CPU path without I/O: parse the connector's JSON batch, decode,
    serialise each measurement (what ``DecodeFunction.process`` does besides Kafka)."""
    records = connector_records(fleet, count, seed=14)
    params = device_parameters(dsn, fleet.devices)
    bodies = [
        b"[" + b",".join(r.model_dump_json().encode() for r in records[i : i + batch]) + b"]"
        for i in range(0, len(records), batch)
    ]
    started = time.perf_counter()
    for body in bodies:
        parsed = parse_invocation(body, {})
        devices_of(parsed)
        result = decode_batch(parsed, params)
        for m in result.measurements:
            m.to_json_bytes()
    return StageRate(count, time.perf_counter() - started, "messages", {"batch": batch})


def measurements_of(dsn: str, fleet: Fleet, count: int, seed: int) -> list[Measurement]:
    """The rows the pipeline would store for ``count`` messages."""
    records = connector_records(fleet, count, seed)
    result = decode_batch(records, device_parameters(dsn, fleet.devices))
    return result.measurements


# --- PostgreSQL ------------------------------------------------------------------------------


def _psql_env(dsn: str) -> dict[str, str]:
    fields = dict(part.split("=", 1) for part in dsn.split())
    return dict(
        os.environ,
        PGHOST=fields.get("host", "127.0.0.1"),
        PGPORT=fields.get("port", "5432"),
        PGUSER=fields.get("user", "postgres"),
        PGPASSWORD=fields.get("password", ""),
        PGDATABASE=fields.get("dbname", "postgres"),
    )


def _psql(dsn: str, command: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command],
        env=_psql_env(dsn),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def copy_raw(dsn: str, rows: Sequence[Measurement], table: str = "iot_measurements") -> StageRate:
    """``psql \\copy`` of the rows into ``table`` itself, the table the sink writes (its
    indexes and natural key; a hypertable when TimescaleDB runs), emptied before and after;
    the time of a psql that does nothing (``SELECT 1``) is subtracted."""
    columns = ", ".join(MEASUREMENT_COLUMNS)
    target = sql.Identifier(table)
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as handle:
        handle.write(copy_payload(rows).getvalue())
        path = Path(handle.name)
    path.chmod(0o644)
    size = path.stat().st_size
    _truncate(dsn, table)
    try:
        idle = min(_psql(dsn, "SELECT 1") for _ in range(3))
        seconds = _psql(dsn, f"\\copy {table} ({columns}) FROM '{path}'") - idle
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
            stored = cur.fetchone()
            cur.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", (table,))
            indexes = cur.fetchone()
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            timescale = cur.fetchone()
        conn.close()
    finally:
        path.unlink(missing_ok=True)
        _truncate(dsn, table)
    if not stored or stored[0] != len(rows):
        raise BenchError(f"raw COPY stored {stored} of {len(rows)} rows")
    return StageRate(
        len(rows),
        seconds,
        "rows",
        {
            "psql_startup_s": idle,
            "bytes": size,
            "table": table,
            "indexes": indexes[0] if indexes else None,
            "timescaledb": timescale[0] if timescale else None,
        },
    )


def sink_core(dsn: str, rows: Sequence[Measurement], batch: int) -> StageRate:
    """``TimescaleSink.write`` (COPY into staging, INSERT ... ON CONFLICT, commit) in process,
    ``batch`` rows per transaction, into ``iot_measurements`` (truncated before and after)."""
    sink = TimescaleSink(lambda: psycopg2.connect(dsn))
    _truncate(dsn)
    try:
        sink.write(rows[:1])  # connection and staging table, outside the timing
        started = time.perf_counter()
        inserted = 1
        for offset in range(1, len(rows), batch):
            inserted += sink.write(rows[offset : offset + batch]).inserted
        seconds = time.perf_counter() - started
    finally:
        sink.close()
        _truncate(dsn)
    if inserted != len(rows):
        raise BenchError(f"sink core inserted {inserted} of {len(rows)} rows")
    return StageRate(len(rows) - 1, seconds, "rows", {"batch": batch})


def _truncate(dsn: str, table: str = "iot_measurements") -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    conn.close()
