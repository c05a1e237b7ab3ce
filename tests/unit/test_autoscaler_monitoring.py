"""Monitoring files: Prometheus config and rules valid, dashboard queries name real series."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from bridge.metrics import BridgeMetrics
from f2lib.metrics import FunctionMetrics
from infra.local.gateway.metrics import GatewayMetrics
from infra.local.launch.prometheus import RULES_FILE, ScrapePorts, check_config, render_config
from infra.local.targets import ReplicaTarget, read_targets, target_groups, write_targets
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.connector.metrics import ConnectorMetrics

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "local" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "f2pipe-pipeline.json"
PROMQL_WORDS = {
    "sum",
    "rate",
    "increase",
    "by",
    "on",
    "histogram_quantile",
    "le",
    "time",
    "or",
    "and",
    "function",
    "function_name",
    "kind",
    "code",
    "outcome",
    "reason",
    "direction",
    "bound",
    "action",
    "topic",
    "partition",
    "job",
    "instance",
    "max",
    "min",
    "avg",
    "count",
}


def known_series() -> set[str]:
    """Every sample name the project's registries can serve (plus Prometheus' own ``up``)."""
    fm = FunctionMetrics()
    fm.observe_invocation(200, 0.1)
    fm.refused("x")
    names = {"up"}
    registries = [
        fm.registry,
        AutoscalerMetrics().registry,
        ConnectorMetrics().registry,
        BridgeMetrics().registry,
        GatewayMetrics().registry,
    ]
    for registry in registries:
        for family in registry.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count"),
            }.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
    return names


def series_in(expr: str) -> set[str]:
    expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("f2:")}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def ports(tmp_path: Path) -> ScrapePorts:
    return ScrapePorts(9090, 8080, 9102, 9103, 9104, tmp_path / "functions.json")


def test_rendered_config_has_a_job_per_part(tmp_path: Path) -> None:
    config = yaml.safe_load(render_config(ports(tmp_path)))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "gateway", "bridge", "connector", "autoscaler", "functions"}
    assert jobs["autoscaler"]["static_configs"][0]["targets"] == ["127.0.0.1:9104"]
    assert jobs["functions"]["metrics_path"] == "/_/metrics"
    assert jobs["functions"]["file_sd_configs"][0]["files"] == [str(tmp_path / "functions.json")]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_rendered_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    (tmp_path / "functions.json").write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(ports(tmp_path)))
    assert "SUCCESS" in check_config(config)


def test_every_dashboard_query_names_series_the_project_exports() -> None:
    known = known_series()
    unknown = {s for e in dashboard_exprs() for s in series_in(e)} - known
    assert unknown == set()


def test_every_rule_names_series_the_project_exports() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    unknown = {s for e in exprs for s in series_in(e)} - known_series()
    assert unknown == set()


def test_series_check_catches_a_misspelt_name() -> None:
    assert series_in("sum by (function) (rate(f2_function_recrods_in_total[1m]))") - known_series()


@pytest.mark.parametrize(
    "series",
    [
        "f2_bridge_messages_received_total",  # throughput
        "f2_connector_consumer_lag",  # lag
        "f2_autoscaler_current_replicas",  # replicas
        "f2_pipeline_end_to_end_latency_seconds_bucket",  # latency
        "f2_connector_dead_letters_total",  # dead letters
        "f2_provision_certificates_total",  # provisioning
        "f2_provision_refused_total",
    ],
)
def test_dashboard_shows(series: str) -> None:
    assert any(series in e for e in dashboard_exprs())


def test_dashboard_uses_the_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["templating"]["list"][0]["name"] == "datasource"
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_files_point_at_the_dashboard_and_prometheus() -> None:
    grafana = MONITORING / "grafana" / "provisioning"
    ds = yaml.safe_load((grafana / "datasources" / "f2pipe.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((grafana / "dashboards" / "f2pipe.yml").read_text())
    assert providers["providers"][0]["options"]["path"].endswith("/f2pipe")


def test_file_sd_targets_round_trip_one_group_per_replica(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "functions.json"
    replicas = [
        ReplicaTarget("sink", 0, 4001),
        ReplicaTarget("decode", 1, 4003),
        ReplicaTarget("decode", 0, 4002),
    ]
    write_targets(path, replicas)
    groups = json.loads(path.read_text())
    assert groups[0] == {
        "targets": ["127.0.0.1:4002"],
        "labels": {"function": "decode", "replica": "0"},
    }
    assert sorted(read_targets(path), key=lambda r: r.port) == sorted(
        replicas, key=lambda r: r.port
    )
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_file_sd_empty_list_is_valid() -> None:
    assert target_groups([]) == []
