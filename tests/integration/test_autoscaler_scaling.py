"""The autoscaler on real Kafka lag: a burst raises a slowed function to >= 3 replicas, then back.

The function watched is ``slow``, a test-only function that sleeps per record (the product
functions have no slowdown of their own). Local mode (default): a real broker (session fixture
``kafka``), the real local gateway running ``slow``, the real connector feeding it from a
6-partition topic, and ``python -m infra.services.autoscaler`` as a process. Stack mode
(``F2_AUTOSCALER_STACK=1``, ``make autoscale-demo``): ``slow`` is deployed on the running
``make up`` stack (through its gateway's API, from a build folder beside the product
functions') on a topic of its own, and the stack's own connector and autoscaler pick it up; it
is removed again afterwards. Either way the test prints the timeline (lag, replicas).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from kafka import KafkaProducer

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all, build_context
from infra.local.ports import free_port
from infra.local.process import ManagedProcess, log_tail
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
TOPIC = "autoscale_burst"
PARTITIONS = 6
DELAY_MS = 20  # per record: one replica drains 50 records/s
LAG_TARGET = 50
BURST = 3000
COOLDOWN_S = 20
# Batches of 50 put each partition's backlog (500) far above the connector's pause threshold
# (2 x batch), so the burst also drives pause/resume while the replicas change (the connector
# once stopped fetching there; it now seeks a partition to its next offset on resume).
CONNECTOR_BATCH = 50

SLOW_HANDLER = """
import json, os, time

from f2lib.metrics import function_metrics

DELAY_S = float(os.environ.get("SLOW_DELAY_MS", "0")) / 1000.0


def handle(event, context):
    metrics = function_metrics()
    if event.path == "/_/metrics":  # until the template serves /_/metrics itself
        body, content_type = metrics.render()
        return {"statusCode": 200, "body": body, "headers": {"Content-Type": content_type}}
    started = time.monotonic()
    records = json.loads(event.body or b"[]")
    records = records if isinstance(records, list) else [records]
    metrics.received(len(records))
    time.sleep(DELAY_S * len(records))
    metrics.emitted("measurement", len(records))
    metrics.observe_invocation(200, time.monotonic() - started)
    return {"statusCode": 200, "body": {"records": len(records), "pid": os.getpid()}}
"""

STACK = """
version: 1.0
provider: {{name: openfaas, gateway: http://127.0.0.1:8080}}
configuration:
  copy: [./functions/f2lib]
functions:
  slow:
    lang: python3-http-f2
    handler: ./functions/slow
    image: test/slow:1
    annotations: {{topic: {topic}}}
    labels:
      com.openfaas.scale.min: "1"
      com.openfaas.scale.max: "5"
      f2pipe.lag.target: "{lag_target}"
    environment: {{SLOW_DELAY_MS: "{delay_ms}"}}
"""


@dataclass
class Scenario:
    """Where the burst goes and whom to watch."""

    gateway_url: str
    auth: tuple[str, str]
    bootstrap: str
    function: str
    topic: str
    autoscaler_url: str
    burst: int
    record: Callable[[int], tuple[bytes, bytes]]
    logs: list[Path] = field(default_factory=list)


def _slow_record(i: int) -> tuple[bytes, bytes]:
    return f"k{i}".encode(), json.dumps({"n": i}).encode()


def _slow_project(root: Path, topic: str) -> StackFile:
    """A project folder holding only the test function ``slow`` (template, handler, f2lib)."""
    shutil.copytree(REPO / "template", root / "template")
    shutil.copytree(
        REPO / "functions" / "f2lib",
        root / "functions" / "f2lib",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "functions" / "slow").mkdir(parents=True)
    (root / "functions" / "slow" / "handler.py").write_text(SLOW_HANDLER)
    (root / "stack.yml").write_text(
        STACK.format(topic=topic, lag_target=LAG_TARGET, delay_ms=DELAY_MS)
    )
    return StackFile.load(root / "stack.yml")


def _wait_http(url: str, proc: ManagedProcess, timeout: float = 60) -> None:
    def ok() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        proc.wait_ready(ok, timeout=timeout)
    except Exception:
        print(log_tail(proc.log_path, 60))
        raise


def _local_scenario(request: pytest.FixtureRequest, root: Path) -> Iterator[Scenario]:
    kafka = request.getfixturevalue("kafka")
    kafka.create_topics([TOPIC], partitions=PARTITIONS)
    project = _slow_project(root, TOPIC)
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text("admin\n")
    (secrets / "basic-auth-password").write_text("scale-pw\n")
    build_all(project, root / "build")
    gw_port, conn_port, as_port = free_port(), free_port(), free_port()
    base = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}",
        "F2_SECRETS_DIR": str(secrets),
    }
    gateway = ManagedProcess(
        "gateway",
        [
            sys.executable,
            "-m",
            "infra.local.gateway",
            "--stack",
            str(root / "stack.yml"),
            "--build-dir",
            str(root / "build"),
            "--state-dir",
            str(root / "state"),
            "--secrets-dir",
            str(secrets),
            "--port",
            str(gw_port),
        ],
        root / "gateway.log",
        cwd=REPO,
        env=base,
    ).start()
    procs = [gateway]
    try:
        _wait_http(f"http://127.0.0.1:{gw_port}/healthz", gateway)
        common = {
            "GATEWAY_URL": f"http://127.0.0.1:{gw_port}",
            "GATEWAY_USERNAME": "admin",
            "KAFKA_BOOTSTRAP": kafka.bootstrap,
            "LOG_LEVEL": "INFO",
        }
        connector = ManagedProcess(
            "connector",
            [sys.executable, "-m", "infra.services.connector"],
            root / "connector.log",
            cwd=REPO,
            env={
                **base,
                **common,
                "CONNECTOR_HTTP_PORT": str(conn_port),
                "CONNECTOR_HTTP_HOST": "127.0.0.1",
                "CONNECTOR_REFRESH_SECONDS": "1",
                "CONNECTOR_LAG_INTERVAL_SECONDS": "1",
                "CONNECTOR_BATCH_MAX_RECORDS": str(CONNECTOR_BATCH),
            },
        ).start()
        procs.append(connector)
        autoscaler = ManagedProcess(
            "autoscaler",
            [sys.executable, "-m", "infra.services.autoscaler"],
            root / "autoscaler.log",
            cwd=REPO,
            env={
                **base,
                **common,
                "AUTOSCALER_HTTP_PORT": str(as_port),
                "AUTOSCALER_HTTP_HOST": "127.0.0.1",
                "AUTOSCALER_INTERVAL_SECONDS": "1",
                "AUTOSCALER_COOLDOWN_SECONDS": str(COOLDOWN_S),
                "AUTOSCALER_RATE_WINDOW_SECONDS": "5",
            },
        ).start()
        procs.append(autoscaler)
        _wait_http(f"http://127.0.0.1:{conn_port}/healthz", connector)
        _wait_http(f"http://127.0.0.1:{as_port}/healthz", autoscaler)
        yield Scenario(
            gateway_url=f"http://127.0.0.1:{gw_port}",
            auth=("admin", "scale-pw"),
            bootstrap=kafka.bootstrap,
            function="slow",
            topic=TOPIC,
            autoscaler_url=f"http://127.0.0.1:{as_port}",
            burst=BURST,
            record=_slow_record,
            logs=[p.log_path for p in procs],
        )
    finally:
        for proc in reversed(procs):
            proc.stop()


def _stack_scenario(root: Path) -> Iterator[Scenario]:
    """``slow`` deployed on the running stack (make up) on a topic of its own, then removed."""
    from infra.local.stack import LocalStack

    stack = LocalStack.load()
    gateway_url = f"http://127.0.0.1:{stack.ports.gateway}"
    autoscaler_url = f"http://127.0.0.1:{stack.ports.autoscaler_http}"
    auth = (stack.secret("basic-auth-user"), stack.secret("basic-auth-password"))
    topic = f"{TOPIC}_{uuid.uuid4().hex[:8]}"
    kafka = stack.kafka()
    kafka.create_topics([topic], partitions=PARTITIONS)
    spec = _slow_project(root, topic).functions["slow"]
    # The stack's gateway deploys from its build folder, as `make deploy-local` does.
    build_context(StackFile.load(root / "stack.yml"), spec, stack.build_dir)
    body = {
        "service": spec.name,
        "image": spec.image,
        "labels": spec.labels,
        "annotations": spec.annotations,
        "envVars": spec.environment,
    }
    deployed = requests.post(f"{gateway_url}/system/functions", json=body, auth=auth, timeout=120)
    assert deployed.status_code in (200, 202), deployed.text
    try:
        wait_for(
            lambda: (
                spec.name
                in requests.get(f"{autoscaler_url}/healthz", timeout=5).json().get("functions", {})
            ),
            timeout=60,
            interval=1,
            message="the stack's autoscaler never listed slow",
        )
        yield Scenario(
            gateway_url=gateway_url,
            auth=auth,
            bootstrap=kafka.bootstrap,
            function=spec.name,
            topic=topic,
            autoscaler_url=autoscaler_url,
            burst=int(os.environ.get("F2_AUTOSCALER_BURST", str(BURST))),
            record=_slow_record,
            logs=[stack.log_path("autoscaler"), stack.log_path("connector")],
        )
    finally:
        requests.delete(
            f"{gateway_url}/system/functions",
            json={"functionName": spec.name},
            auth=auth,
            timeout=60,
        )
        shutil.rmtree(stack.build_dir / spec.name, ignore_errors=True)
        with kafka.admin() as admin:
            admin.delete_topics([topic])


@pytest.fixture(scope="module")
def scenario(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("autoscale")
    if os.environ.get("F2_AUTOSCALER_STACK") == "1":
        yield from _stack_scenario(root)
        return
    yield from _local_scenario(request, root)


@dataclass
class Point:
    t: float
    lag: int | None
    current: int | None
    desired: int | None
    available: int | None


class Timeline:
    """Samples the autoscaler's view and the gateway's replicas once a second."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.points: list[Point] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        s = self.scenario
        while not self._stop.wait(1.0):
            lag = current = desired = available = None
            try:
                health = requests.get(f"{s.autoscaler_url}/healthz", timeout=2).json()
                view = health.get("functions", {}).get(s.function) or {}
                lag, desired = view.get("lag"), view.get("desired")
                fn = requests.get(
                    f"{s.gateway_url}/system/function/{s.function}", auth=s.auth, timeout=2
                ).json()
                current, available = fn.get("replicas"), fn.get("availableReplicas")
            except (requests.RequestException, ValueError) as exc:
                logger.warning("timeline sample failed: %s", exc)
            self.points.append(
                Point(time.monotonic() - self.started, lag, current, desired, available)
            )

    def wait_for(self, what: str, check: Callable[[list[Point]], bool], timeout: float) -> float:
        """Wait until ``check`` holds for the points so far; return when (seconds from start)."""
        wait_for(
            lambda: check(list(self.points)),
            timeout=timeout,
            interval=0.5,
            message=lambda: f"waiting for {what}; timeline:\n{self.render()}",
        )
        return time.monotonic() - self.started

    def render(self) -> str:
        rows = [f"{'t(s)':>6} {'lag':>7} {'replicas':>8} {'ready':>5} {'desired':>7}"]
        rows += [
            f"{p.t:6.1f} {p.lag!s:>7} {p.current!s:>8} {p.available!s:>5} {p.desired!s:>7}"
            for p in self.points
        ]
        return "\n".join(rows)


def _metric(url: str, name: str, **labels: str) -> float:
    """Sum of a series' samples whose labels include ``labels`` in a /metrics text."""
    total = 0.0
    for line in requests.get(url, timeout=5).text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_burst_scales_up_to_three_or_more_then_back_to_minimum_after_cooldown(
    scenario: Scenario,
) -> None:
    s = scenario
    health = requests.get(f"{s.autoscaler_url}/healthz", timeout=5)
    assert health.status_code == 200, health.text
    watched = health.json()["functions"].get(s.function, {})
    minimum, lag_target = watched.get("min", 1), watched.get("lag_target", LAG_TARGET)
    cooldown = float(health.json().get("cooldown_s", COOLDOWN_S))
    producer = KafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=20)
    with Timeline(s) as timeline:
        timeline.wait_for(
            "the minimum replicas", lambda ps: bool(ps) and ps[-1].current == minimum, timeout=60
        )
        burst_at = time.monotonic() - timeline.started
        for i in range(s.burst):
            key, value = s.record(i)
            producer.send(s.topic, key=key, value=value)
        producer.flush(timeout=60)
        producer.close()
        peak_at = timeline.wait_for(
            ">= 3 replicas", lambda ps: any((p.current or 0) >= 3 for p in ps), timeout=90
        )
        drained_at = timeline.wait_for(
            "lag drained",
            lambda ps: any(p.t > peak_at and p.lag is not None and p.lag < lag_target for p in ps),
            timeout=300,
        )
        back_at = timeline.wait_for(
            "the minimum again",
            lambda ps: any(p.t > drained_at and p.current == minimum for p in ps),
            timeout=cooldown + 120,
        )
    points = timeline.points
    print(
        f"\nautoscaler timeline ({s.function}, burst of {s.burst} at t={burst_at:.1f}s, "
        f"cool-down {cooldown:.0f}s):\n{timeline.render()}"
    )
    print(f"peak >= 3 at {peak_at:.1f}s, drained at {drained_at:.1f}s, minimum at {back_at:.1f}s")
    last_up = max(p.t for p in points if p.t <= back_at and (p.current or 0) >= 3)
    first_high = min(p.t for p in points if (p.current or 0) >= 3)
    assert max(p.current or 0 for p in points) >= 3
    assert peak_at - burst_at < 30, "scale-up was not prompt"
    # Going down waits for a cool-down with no higher recommendation; the lag was above one
    # replica's target until it drained, so the minimum cannot come before drained + cool-down
    # minus the sampling slack of a few seconds.
    assert back_at - first_high >= cooldown - 3
    assert back_at >= last_up
    up = _metric(
        f"{s.autoscaler_url}/metrics",
        "f2_autoscaler_decisions_total",
        function=s.function,
        direction="up",
    )
    down = _metric(
        f"{s.autoscaler_url}/metrics",
        "f2_autoscaler_decisions_total",
        function=s.function,
        direction="down",
    )
    assert up >= 1 and down >= 1


def test_function_replicas_serve_their_own_metrics(scenario: Scenario) -> None:
    s = scenario
    url = f"{s.gateway_url}/function/{s.function}/_/metrics"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200
    assert "f2_function_records_in_total" in resp.text
    assert "process_resident_memory_bytes" in resp.text
