"""The peer a user would pick instead, and Mosquitto's own ceiling, on the pipeline's workload.

* Telegraf (``inputs.mqtt_consumer`` -> ``outputs.postgresql``, built by
  ``infra/tools/setup/install-telegraf.sh`` with only those plugins): the same generated F2
  messages (topics and payloads, QoS 1, a persistent session), under ``bench/telegraf/`` so
  the bridge does not see them, stored in PostgreSQL on the stack's server. Measured as a
  backlog drain: Telegraf is paused (SIGSTOP) while the messages are published and
  acknowledged by the broker, then resumed; rate = messages / (last row's ``ingested_at`` -
  resume), CPU of Telegraf, Mosquitto and PostgreSQL meanwhile. The pipeline is measured the
  same way (``pipeline.drain``), so the publisher's own speed limits neither.
* Mosquitto with its C clients: ``mosquitto_pub -l`` (one payload per line, one topic, QoS 1)
  -> ``mosquitto_sub`` (QoS 1); rate = messages / (last received - start of the publisher).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from f2lib.errors import BenchError
from infra.tools.bench.processes import cpu_ticks, descendants, parent_pids
from infra.tools.bench.stats import rate
from infra.tools.bench.workload import Fleet, messages

logger = logging.getLogger(__name__)

TELEGRAF_TABLE = "f2_telegraf"
TELEGRAF_PREFIX = "bench/telegraf/cmnd"  # the F2 topic after bench/telegraf/
C_CLIENT_TOPIC = "bench/c/cmnd"
STOP_LIMIT_S = 40.0  # Telegraf's MQTT keepalive is 60 s: the broker keeps a paused client


def telegraf_config(
    *,
    mqtt_port: int,
    mqtt_user: str,
    pg_port: int,
    dbname: str,
    batch: int,
) -> str:
    """A Telegraf config for the F2 workload: one row per message, the topic's levels as tags,
    the payload's members as fields, its timestamp as the row's time. Credentials come from
    the environment (F2_BENCH_MQTT_PASSWORD, PGPASSWORD), never the file."""
    return f"""
[agent]
  interval = "10s"
  flush_interval = "100ms"
  flush_jitter = "0s"
  metric_batch_size = {batch}
  metric_buffer_limit = 1000000
  omit_hostname = true
  quiet = true

[[inputs.mqtt_consumer]]
  servers = ["tcp://127.0.0.1:{mqtt_port}"]
  topics = ["{TELEGRAF_PREFIX}/#"]
  qos = 1
  persistent_session = true
  client_id = "f2-bench-telegraf"
  username = "{mqtt_user}"
  password = "${{F2_BENCH_MQTT_PASSWORD}}"
  max_undelivered_messages = 1000
  topic_tag = "topic"
  name_override = "{TELEGRAF_TABLE}"
  data_format = "json"
  json_time_key = "timestamp"
  json_time_format = "2006-01-02 15:04:05.999999"
  json_timezone = "UTC"
  json_string_fields = ["*"]  # keeps the text and boolean members as fields
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "{TELEGRAF_PREFIX}/+/+/+/+"
    tags = "_/_/_/device_id/connector_mode/connector/component"

[[outputs.postgresql]]
  connection = "host=127.0.0.1 port={pg_port} user=postgres dbname={dbname} sslmode=disable"
  timestamp_column_type = "timestamp with time zone"
  create_templates = [
    '''CREATE TABLE {{{{ .table }}}} ({{{{ .columns }}}},
       ingested_at timestamptz NOT NULL DEFAULT now())''',
  ]
"""


@dataclass
class PeerFigures:
    """A drain of ``messages`` queued messages by one consumer stack, and its CPU."""

    name: str
    messages: int
    rows: int
    seconds: float
    msgs_per_s: float
    cpu_seconds: dict[str, float]
    cpu_ms_per_message: dict[str, float]
    method: str
    detail: dict[str, Any]


class ProcessCpu:
    """CPU seconds of named process trees between ``start()`` and ``stop()``."""

    def __init__(self, roots: dict[str, int]) -> None:
        self._roots = roots
        self._start: dict[int, int] = {}

    def _ticks(self) -> dict[str, dict[int, int]]:
        parents = parent_pids()
        found: dict[str, dict[int, int]] = {}
        for name, root in self._roots.items():
            pids = [root, *descendants(root, parents)]
            found[name] = {pid: cpu_ticks(pid) for pid in pids}
        return found

    def start(self) -> ProcessCpu:
        self._start = {pid: t for group in self._ticks().values() for pid, t in group.items()}
        return self

    def stop(self) -> dict[str, float]:
        hertz = os.sysconf("SC_CLK_TCK")
        return {
            name: sum(t - self._start.get(pid, 0) for pid, t in group.items()) / hertz
            for name, group in self._ticks().items()
        }


def _count(dsn: str, table: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def _exists(dsn: str, table: str) -> bool:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        row = cur.fetchone()
    conn.close()
    return bool(row and row[0])


def _sql(dsn: str, statement: sql.Composable | str) -> Any:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(statement)
        row = cur.fetchone() if cur.description else None
    conn.close()
    return row[0] if row else None


def _wait(read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def _settle(read: Callable[[], int], goal: int, timeout_s: float) -> int:
    """Wait until ``read()`` reaches ``goal`` or stops moving for a second (the warm-up
    messages published before the subscription are not delivered)."""
    deadline = time.monotonic() + timeout_s
    last, since = read(), time.monotonic()
    while last < goal and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
    return last


def telegraf_version(binary: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def telegraf_drain(
    binary: Path,
    *,
    dsn: str,
    pg_password: str,
    mqtt_port: int,
    mqtt_user: str,
    mqtt_password: str,
    publish: Callable[[int, str], Any],
    broker_pids: dict[str, int],
    count: int,
    batch: int = 5000,
    work_dir: Path,
) -> PeerFigures:
    """Telegraf drains ``count`` queued F2 messages into PostgreSQL (see the module's doc).

    ``publish(count, topic_prefix)`` publishes that many messages of the workload and returns
    once the broker acknowledged them all.
    """
    fields = dict(part.split("=", 1) for part in dsn.split())
    config = work_dir / "telegraf.conf"
    config.write_text(
        telegraf_config(
            mqtt_port=mqtt_port,
            mqtt_user=mqtt_user,
            pg_port=int(fields["port"]),
            dbname=fields["dbname"],
            batch=batch,
        )
    )
    env = dict(os.environ, F2_BENCH_MQTT_PASSWORD=mqtt_password, PGPASSWORD=pg_password)
    log = (work_dir / "telegraf.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        # Warm-up: connected, subscribed, its table created (outside the timing).
        warm = 0
        deadline = time.monotonic() + 60
        while not _exists(dsn, TELEGRAF_TABLE) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"telegraf exited: {(work_dir / 'telegraf.log').read_text()}")
            publish(200, TELEGRAF_PREFIX)
            warm += 200
            time.sleep(0.5)
        if not _exists(dsn, TELEGRAF_TABLE):
            raise BenchError("telegraf stored nothing within 60 s")
        _settle(lambda: _count(dsn, TELEGRAF_TABLE), warm, 30.0)
        _sql(dsn, sql.SQL("TRUNCATE {}").format(sql.Identifier(TELEGRAF_TABLE)))
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            publish(count, TELEGRAF_PREFIX)
            cpu = ProcessCpu({"telegraf": proc.pid, **broker_pids}).start()
            resumed = time.time()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        stored = _wait(lambda: _count(dsn, TELEGRAF_TABLE), lambda n: n >= count, 300.0)
        cpu_seconds = cpu.stop()
        last = float(
            _sql(
                dsn,
                sql.SQL("SELECT extract(epoch FROM max(ingested_at)) FROM {}").format(
                    sql.Identifier(TELEGRAF_TABLE)
                ),
            )
            or resumed
        )
        columns = _sql(
            dsn,
            sql.SQL(
                "SELECT string_agg(column_name, ',') FROM information_schema.columns"
                " WHERE table_name = {}"
            ).format(sql.Literal(TELEGRAF_TABLE)),
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        if proc.poll() is None:
            proc.kill()
        log.close()
    if stored != count:
        raise BenchError(f"telegraf stored {stored} of {count} messages")
    seconds = last - resumed
    return PeerFigures(
        name="telegraf",
        messages=count,
        rows=stored,
        seconds=seconds,
        msgs_per_s=rate(count, seconds),
        cpu_seconds={k: round(v, 2) for k, v in cpu_seconds.items()},
        cpu_ms_per_message={k: round(v * 1000 / count, 4) for k, v in cpu_seconds.items()},
        method="backlog drain: paused while the broker queued the messages, then resumed",
        detail={
            "version": telegraf_version(binary),
            "metric_batch_size": batch,
            "flush_interval_ms": 100,
            "columns": columns,
            "table": "one row per message, no key, no index (Telegraf's own table)",
        },
    )


def mosquitto_c_clients(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    fleet: Fleet,
    count: int,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """``mosquitto_pub -l`` -> ``mosquitto_sub`` at QoS 1 with the workload's payloads."""
    with tempfile.TemporaryDirectory(prefix="f2-bench-mqtt-c-") as folder:
        config_home = Path(folder)
        (config_home / "mosquitto_pub").write_text(f"-u {username}\n-P {password}\n")
        (config_home / "mosquitto_sub").write_text(f"-u {username}\n-P {password}\n")
        for name in ("mosquitto_pub", "mosquitto_sub"):
            (config_home / name).chmod(0o600)
        lines = config_home / "payloads.txt"
        stream = messages(fleet, seed=41)
        with lines.open("wb") as out:
            for _ in range(count):
                out.write(next(stream).payload + b"\n")
        env = dict(os.environ, XDG_CONFIG_HOME=str(config_home))
        common = ["-h", host, "-p", str(port), "-q", "1"]
        sub = subprocess.Popen(
            ["mosquitto_sub", *common, "-t", f"{C_CLIENT_TOPIC}/#", "-i", "f2-bench-c-sub",
             "-C", str(count + 1)],
            stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        received = 0
        ready = threading.Event()
        finished: list[float] = []

        def read() -> None:
            nonlocal received
            assert sub.stdout is not None
            for _ in sub.stdout:
                received += 1
                ready.set()
            finished.append(time.time())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        pub_argv = ["mosquitto_pub", *common, "-t", f"{C_CLIENT_TOPIC}/warm", "-m", "{}"]
        while not ready.is_set() and sub.poll() is None:
            subprocess.run(pub_argv, env=env, check=False, capture_output=True)
            ready.wait(0.2)
        started = time.time()
        with lines.open("rb") as payloads:
            subprocess.run(
                ["mosquitto_pub", *common, "-t", f"{C_CLIENT_TOPIC}/f2", "-l",
                 "-i", "f2-bench-c-pub"],
                stdin=payloads, env=env, check=True, timeout=timeout_s,
            )  # fmt: skip
        published = time.time()
        try:
            sub.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            sub.kill()
        reader.join(timeout=10)
    got = received - 1
    if got < count:
        raise BenchError(f"mosquitto C clients: {got} of {count} messages received")
    seconds = (finished[0] if finished else time.time()) - started
    return {
        "items": count,
        "seconds": seconds,
        "unit": "messages",
        "per_second": rate(count, seconds),
        "detail": {
            "publish_only_per_second": rate(count, published - started),
            "qos": 1,
            "topics": 1,
            "clients": "mosquitto_pub -l -> mosquitto_sub",
        },
    }
