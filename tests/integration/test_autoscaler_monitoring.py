"""Prometheus (Debian's binary) with the local config: every job up, replicas found by file SD."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from f2lib.metrics import FunctionMetrics
from infra.local.gateway.metrics import GatewayMetrics
from infra.local.launch.prometheus import (
    PROMETHEUS_BIN,
    PrometheusServer,
    ScrapePorts,
    summarize_targets,
)
from infra.local.ports import free_port
from infra.local.targets import ReplicaTarget, write_targets
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.kit.ops_http import OpsServer
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(PROMETHEUS_BIN) is None, reason="Debian prometheus missing"),
]


class ReplicaServer:
    """One function replica's ``/_/metrics``, as the template serves it."""

    def __init__(self, metrics: FunctionMetrics) -> None:
        def handler(*args: Any) -> BaseHTTPRequestHandler:
            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    body, content_type = metrics.render()
                    self.send_response(200 if self.path == "/_/metrics" else 404)
                    self.send_header("Content-Type", content_type)
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *_: Any) -> None:
                    pass

            return Handler(*args)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ops(registry: CollectorRegistry) -> OpsServer:
    return OpsServer("127.0.0.1", 0, registry, lambda: (True, {})).start()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("prometheus")
    autoscaler = AutoscalerMetrics()
    autoscaler.lag.labels("decode").set(1234)
    parts = [
        ops(GatewayMetrics().registry),
        ops(BridgeMetrics().registry),
        ops(ConnectorMetrics().registry),
        ops(autoscaler.registry),
    ]
    replicas = []
    for count in (3, 4):
        metrics = FunctionMetrics()
        metrics.received(count)
        replicas.append(ReplicaServer(metrics))
    targets_file = root / "sd" / "functions.json"
    write_targets(
        targets_file, [ReplicaTarget("decode", i, r.port) for i, r in enumerate(replicas)]
    )
    ports = ScrapePorts(free_port(), *(p.port for p in parts), function_targets_file=targets_file)
    server = PrometheusServer(root / "state", ports, scrape_interval_s=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for part in parts:
            part.stop()
        for replica in replicas:
            replica.stop()


def query(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{server.url}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


SCRAPES_S = 45.0  # Prometheus scrapes and evaluates on its own schedule


def test_every_target_is_up(prometheus: PrometheusServer) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        rows = prometheus.targets()
        return rows if len(rows) == 7 and all(r["health"] == "up" for r in rows) else None

    rows = wait_for(all_up, SCRAPES_S, 0.5, lambda: f"not all up: {prometheus.targets()}")
    assert {r["job"] for r in rows} == {
        "prometheus",
        "gateway",
        "bridge",
        "connector",
        "autoscaler",
        "functions",
    }
    assert all(r["health"] == "up" for r in rows), rows
    assert summarize_targets(prometheus.url).endswith("7/7 targets up (2 function replicas)")


def test_function_replicas_are_scraped_separately_and_summed(prometheus: PrometheusServer) -> None:
    expr = 'sum by (function) (f2_function_records_in_total{job="functions"})'
    result = wait_for(lambda: query(prometheus, expr), SCRAPES_S, 0.5, expr)
    assert result[0]["metric"] == {"function": "decode"}
    assert float(result[0]["value"][1]) == 7.0
    replicas = query(prometheus, 'count by (function) (up{job="functions"} == 1)')
    assert float(replicas[0]["value"][1]) == 2.0


def test_autoscaler_series_and_recording_rules_load(prometheus: PrometheusServer) -> None:
    lag = wait_for(lambda: query(prometheus, "f2_autoscaler_lag_records"), SCRAPES_S, 0.5)
    assert float(lag[0]["value"][1]) == 1234.0
    rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"] for g in rules} == {"f2pipe-recording", "f2pipe-alerts"}
    recorded = wait_for(lambda: query(prometheus, "f2:function_records_in:rate1m"), SCRAPES_S, 0.5)
    assert recorded[0]["metric"]["function"] == "decode"
