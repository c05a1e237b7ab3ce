"""The autoscaler's cycle with a fake gateway and lag reader: what it scales, exports and skips."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from prometheus_client import generate_latest

from f2lib.errors import GatewayError, MonitoringError, StreamError
from infra.services.autoscaler.health import summarize
from infra.services.autoscaler.lag import GroupLag, PartitionLag
from infra.services.autoscaler.metrics import AutoscalerMetrics
from infra.services.autoscaler.policy import Direction, PolicyConfig
from infra.services.autoscaler.service import Autoscaler
from infra.services.kit.openfaas import FunctionStatus, parse_listing
from infra.services.kit.ops_http import OpsServer

LABELS = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "5", "f2pipe.lag.target": "100"}


class FakeGateway:
    def __init__(self, functions: list[FunctionStatus]) -> None:
        self.listing = {f.name: f for f in functions}
        self.calls: list[tuple[str, int]] = []
        self.fail_scale = False
        self.fail_list = False

    def functions(self) -> list[FunctionStatus]:
        if self.fail_list:
            raise GatewayError("gateway down")
        return list(self.listing.values())

    def scale(self, name: str, replicas: int) -> None:
        if self.fail_scale:
            raise GatewayError("refused")
        self.calls.append((name, replicas))
        old = self.listing[name]
        self.listing[name] = FunctionStatus(name, replicas, replicas, old.labels, old.annotations)


class FakeLag:
    def __init__(self, partitions: int = 6) -> None:
        self.lag: dict[str, int] = {}
        self.partitions = partitions
        self.fail = False
        self.asked: list[Mapping[str, Sequence[str]]] = []

    def read(self, groups: Mapping[str, Sequence[str]]) -> dict[str, GroupLag]:
        self.asked.append(dict(groups))
        if self.fail:
            raise StreamError("kafka down")
        out = {}
        for group, topics in groups.items():
            total = self.lag.get(group, 0)
            rows = [PartitionLag(topics[0], i, 0, 0, total if i == 0 else 0)
                    for i in range(self.partitions)]  # fmt: skip
            out[group] = GroupLag(group, tuple(rows))
        return out

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decode(replicas: int = 1, labels: dict[str, str] | None = None) -> FunctionStatus:
    return FunctionStatus("decode", replicas, replicas, labels or LABELS, {"topic": "raw"})


def make(
    gateway: FakeGateway, lag: FakeLag, clock: Clock, **kwargs: object
) -> tuple[Autoscaler, AutoscalerMetrics]:
    metrics = AutoscalerMetrics()
    policy = PolicyConfig(cooldown_s=30, drain_horizon_s=20, rate_window_s=10, lookahead_s=5)
    scaler = Autoscaler(gateway, lag, metrics, policy, clock=clock, wall_clock=lambda: 1e9,
                        **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return scaler, metrics


def value(metrics: AutoscalerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_cycle__reads_the_connector_group_of_each_annotated_function() -> None:
    provision = FunctionStatus("provision", 1, 1, {"com.openfaas.scale.max": "1"}, {})
    gateway, lag, clock = FakeGateway([decode(), provision]), FakeLag(), Clock()
    scaler, _ = make(gateway, lag, clock)
    scaler.cycle()
    assert lag.asked == [{"f2-connector-decode": ("raw",)}]


def test_cycle__scales_up_through_the_gateway_and_exports_the_decision() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    lag.lag["f2-connector-decode"] = 350
    scaler, metrics = make(gateway, lag, clock)
    (outcome,) = scaler.cycle()
    assert outcome.applied and outcome.decision.direction is Direction.UP
    assert gateway.calls == [("decode", 4)]
    assert value(metrics, "f2_autoscaler_lag_records", function="decode") == 350
    assert value(metrics, "f2_autoscaler_desired_replicas", function="decode") == 4
    assert value(metrics, "f2_autoscaler_current_replicas", function="decode") == 1
    assert value(metrics, "f2_autoscaler_decisions_total", function="decode", direction="up") == 1
    assert value(metrics, "f2_autoscaler_replica_limit", function="decode", bound="partitions") == 6
    assert value(metrics, "f2_autoscaler_cycles_total", result="ok") == 1


def test_cycle__partition_count_caps_the_replicas() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(partitions=2), Clock()
    lag.lag["f2-connector-decode"] = 10_000
    scaler, _ = make(gateway, lag, clock)
    scaler.cycle()
    assert gateway.calls == [("decode", 2)]


def test_cycle__replica_cap_applies_openfaas_ce_limit() -> None:
    labels = {**LABELS, "com.openfaas.scale.max": "20"}
    gateway, lag, clock = FakeGateway([decode(labels=labels)]), FakeLag(partitions=12), Clock()
    lag.lag["f2-connector-decode"] = 10_000
    scaler, _ = make(gateway, lag, clock, replica_cap=5)
    scaler.cycle()
    assert gateway.calls == [("decode", 5)]


def test_cycle__back_to_minimum_only_after_the_cooldown() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    scaler, _ = make(gateway, lag, clock)
    lag.lag["f2-connector-decode"] = 500
    scaler.cycle()
    assert gateway.calls == [("decode", 5)]
    lag.lag["f2-connector-decode"] = 0
    for _ in range(5):  # 25 s of no lag: inside the 30 s cool-down
        clock.now += 5
        scaler.cycle()
    assert gateway.calls == [("decode", 5)]
    clock.now += 10
    scaler.cycle()
    assert gateway.calls == [("decode", 5), ("decode", 1)]


def test_cycle__dry_run_decides_without_calling_the_gateway() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    lag.lag["f2-connector-decode"] = 350
    scaler, metrics = make(gateway, lag, clock, dry_run=True)
    (outcome,) = scaler.cycle()
    assert gateway.calls == [] and not outcome.applied
    assert value(metrics, "f2_autoscaler_desired_replicas", function="decode") == 4


def test_cycle__refused_scale_call_is_counted_not_raised() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    gateway.fail_scale = True
    lag.lag["f2-connector-decode"] = 350
    scaler, metrics = make(gateway, lag, clock)
    (outcome,) = scaler.cycle()
    assert not outcome.applied
    assert value(metrics, "f2_autoscaler_scale_errors_total", function="decode") == 1


@pytest.mark.parametrize("broken", ["gateway", "kafka"])
def test_cycle__unreachable_dependency_skips_the_cycle_and_turns_health_red(broken: str) -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    scaler, metrics = make(gateway, lag, clock)
    gateway.fail_list = broken == "gateway"
    lag.fail = broken == "kafka"
    assert scaler.cycle() == []
    assert value(metrics, "f2_autoscaler_cycles_total", result=f"{broken}_error") == 1
    assert scaler.health()[0] is False


def test_cycle__health_green_after_a_good_cycle_and_lists_functions() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    scaler, _ = make(gateway, lag, clock)
    scaler.cycle()
    healthy, details = scaler.health()
    assert healthy
    assert details["functions"]["decode"]["lag_target"] == 100


def test_cycle__bad_labels_skip_the_function_without_stopping_others() -> None:
    bad = FunctionStatus("sink", 1, 1, {**LABELS, "f2pipe.lag.target": "lots"}, {"topic": "d"})
    gateway, lag, clock = FakeGateway([decode(), bad]), FakeLag(), Clock()
    lag.lag["f2-connector-decode"] = 350
    scaler, _ = make(gateway, lag, clock)
    outcomes = scaler.cycle()
    assert [o.function for o in outcomes] == ["decode"]


def test_cycle__removed_function_loses_its_series() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    scaler, metrics = make(gateway, lag, clock)
    scaler.cycle()
    del gateway.listing["decode"]
    scaler.cycle()
    assert b'f2_autoscaler_lag_records{function="decode"}' not in generate_latest(metrics.registry)


def test_listing__null_labels_and_annotations_are_empty() -> None:
    (status,) = parse_listing(
        [{"name": "fn", "replicas": 2, "availableReplicas": None, "labels": None}]
    )
    assert status == FunctionStatus("fn", 2, 0, {}, {})


def test_listing__not_an_array_is_a_gateway_error() -> None:
    with pytest.raises(GatewayError):
        parse_listing({"name": "fn"})


def test_health_summary_line_from_the_ops_endpoint() -> None:
    gateway, lag, clock = FakeGateway([decode()]), FakeLag(), Clock()
    lag.lag["f2-connector-decode"] = 350
    scaler, metrics = make(gateway, lag, clock)
    server = OpsServer("127.0.0.1", 0, metrics.registry, scaler.health).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        with pytest.raises(MonitoringError, match="unhealthy"):
            summarize(url)
        scaler.cycle()
        assert summarize(url) == "decode 1->4 (1..5, lag 350, target 100/replica)"
    finally:
        server.stop()
    with pytest.raises(MonitoringError, match="no answer"):
        summarize(url)
