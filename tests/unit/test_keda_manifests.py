"""KEDA ScaledObjects: generated from stack.yml, equal to the committed ones, same limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from f2lib.contracts.functions import scaling_spec
from f2lib.errors import ConfigError
from infra.deploy.keda import DEFAULT_OUT, DEFAULT_STACK, KedaOptions, differences, main, render
from infra.deploy.stackfile import StackFile
from infra.services.autoscaler.config import AutoscalerConfig

STACK = StackFile.load(DEFAULT_STACK, env={})


def test_committed_manifests_equal_the_generated_ones() -> None:
    assert differences(render(STACK), DEFAULT_OUT) == []


def test_every_lag_scaled_function_has_a_scaled_object_with_its_labels() -> None:
    files = render(STACK)
    for name, fn in STACK.functions.items():
        spec = scaling_spec(name, fn.labels, fn.annotations)
        if spec is None:
            assert f"{name}-scaledobject.yaml" not in files
            continue
        doc = yaml.safe_load(files[f"{name}-scaledobject.yaml"])
        assert doc["spec"]["minReplicaCount"] == spec.min_replicas
        assert doc["spec"]["maxReplicaCount"] == min(spec.max_replicas, 5)
        (trigger,) = doc["spec"]["triggers"]
        assert trigger["metadata"]["lagThreshold"] == str(spec.lag_target)
        assert trigger["metadata"]["consumerGroup"] == f"f2-connector-{name}"
        assert trigger["metadata"]["topic"] == spec.topics[0]
        assert doc["spec"]["scaleTargetRef"]["name"] == name
        assert doc["metadata"]["namespace"] == "openfaas-fn"


def test_decode_and_sink_are_lag_scaled_and_provision_is_not() -> None:
    assert sorted(render(STACK)) == [
        "decode-scaledobject.yaml",
        "kustomization.yaml",
        "sink-scaledobject.yaml",
    ]


def test_label_change_changes_the_manifest(tmp_path: Path) -> None:
    text = DEFAULT_STACK.read_text().replace('f2pipe.lag.target: "1000"', 'f2pipe.lag.target: "7"')
    (tmp_path / "stack.yml").write_text(text)
    files = render(StackFile.load(tmp_path / "stack.yml", env={}))
    doc = yaml.safe_load(files["decode-scaledobject.yaml"])
    assert doc["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "7"
    assert differences(files, DEFAULT_OUT) == ["different decode-scaledobject.yaml"]


def test_max_above_openfaas_ce_limit_is_capped_at_five(tmp_path: Path) -> None:
    text = DEFAULT_STACK.read_text().replace(
        'com.openfaas.scale.max: "5"', 'com.openfaas.scale.max: "9"'
    )
    (tmp_path / "stack.yml").write_text(text)
    files = render(StackFile.load(tmp_path / "stack.yml", env={}))
    assert yaml.safe_load(files["decode-scaledobject.yaml"])["spec"]["maxReplicaCount"] == 5
    uncapped = render(StackFile.load(tmp_path / "stack.yml", env={}), KedaOptions(replica_cap=0))
    assert yaml.safe_load(uncapped["decode-scaledobject.yaml"])["spec"]["maxReplicaCount"] == 9


def test_scale_to_zero_is_refused_for_openfaas_ce(tmp_path: Path) -> None:
    text = DEFAULT_STACK.read_text().replace(
        'com.openfaas.scale.min: "1"', 'com.openfaas.scale.min: "0"'
    )
    (tmp_path / "stack.yml").write_text(text)
    with pytest.raises(ConfigError):
        render(StackFile.load(tmp_path / "stack.yml", env={}))


def test_check_reports_stale_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "old-scaledobject.yaml").write_text("x")
    (tmp_path / "README.md").write_text("kept")
    problems = differences(render(STACK), tmp_path)
    assert "stale old-scaledobject.yaml" in problems
    assert "missing decode-scaledobject.yaml" in problems
    assert not any("README" in p for p in problems)


def test_cli_writes_then_check_passes(tmp_path: Path) -> None:
    out = tmp_path / "keda"
    assert main(["--out", str(out), "--check"]) == 1
    assert main(["--out", str(out)]) == 0
    assert main(["--out", str(out), "--check"]) == 0
    assert (out / "decode-scaledobject.yaml").read_text() == (
        DEFAULT_OUT / "decode-scaledobject.yaml"
    ).read_text()


def test_scale_down_window_is_the_autoscaler_default_cooldown() -> None:
    doc = yaml.safe_load(render(STACK)["decode-scaledobject.yaml"])
    behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    cooldown = AutoscalerConfig.model_fields["cooldown_s"].default
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == cooldown
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
