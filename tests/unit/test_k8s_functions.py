"""The chart's function list: generated from stack.yml, equal to the committed one, drift caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from f2lib.contracts.functions import consumer_group, replica_bounds, scaling_spec
from f2lib.errors import ConfigError
from infra.deploy import keda
from infra.deploy.k8s_functions import (
    CHART_FUNCTIONS,
    DEFAULT_STACK,
    chart_function,
    connector_entry,
    main,
    render_chart_functions,
    service_url,
)
from infra.deploy.stackfile import FunctionSpec, StackFile

RAW = StackFile.load(DEFAULT_STACK, expand=False)


def committed() -> dict[str, dict[str, object]]:
    return dict(yaml.safe_load(CHART_FUNCTIONS.read_text())["functions"])


def test_committed_function_list_equals_the_generated_one() -> None:
    assert CHART_FUNCTIONS.read_text() == render_chart_functions(RAW)
    assert main(["--check"]) == 0


def test_every_stack_function_is_listed_with_what_the_contracts_read_from_its_labels() -> None:
    listed = committed()
    assert set(listed) == set(RAW.functions)
    for name, spec in RAW.functions.items():
        entry = listed[name]
        assert entry["topics"] == list(spec.topics)
        assert entry["consumerGroup"] == consumer_group(name) == f"f2-connector-{name}"
        assert (entry["minReplicas"], entry["maxReplicas"]) == replica_bounds(name, spec.labels)
        scaling = scaling_spec(name, spec.labels, spec.annotations)
        assert entry.get("lagTarget") == (scaling.lag_target if scaling else None)
        assert entry["environment"] == spec.environment
        assert entry["secrets"] == list(spec.secrets)
        assert (entry["limits"], entry["requests"]) == (spec.limits, spec.requests)


def test_stack_references_are_kept_for_the_chart_to_expand() -> None:
    decode = committed()["decode"]
    assert decode["image"] == "${F2_REGISTRY:-f2pipe}/decode:${F2_TAG:-0.1.0}"
    assert committed()["provision"]["environment"]["S3_ENDPOINT_URL"] == (
        "${F2_S3_ENDPOINT_URL:-http://minio:9000}"
    )


def drifted_stack(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_STACK.read_text()
    assert old in text
    stack = tmp_path / "stack.yml"
    stack.write_text(text.replace(old, new, 1))
    return stack


def test_check__fails_when_a_topic_annotation_changed_and_the_chart_was_not_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = drifted_stack(tmp_path, "topic: raw_iot_data", "topic: raw_iot_data_v2")
    assert main(["--stack", str(stack), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"different {CHART_FUNCTIONS}" in err
    assert "different decode-scaledobject.yaml" in err
    assert "python -m infra.deploy.k8s_functions" in err


def test_check__fails_when_a_secret_or_environment_changed(tmp_path: Path) -> None:
    stack = drifted_stack(
        tmp_path, "      - timeseries-dsn\n", "      - timeseries-dsn\n      - x\n"
    )
    assert main(["--stack", str(stack), "--check"]) == 1
    stack = drifted_stack(
        tmp_path, 'PARAMS_CACHE_TTL_SECONDS: "60"', 'PARAMS_CACHE_TTL_SECONDS: "5"'
    )
    assert main(["--stack", str(stack), "--check"]) == 1


def test_write_then_check_passes_on_the_drifted_stack(tmp_path: Path) -> None:
    stack = drifted_stack(tmp_path, "topic: decoded_iot_data", "topic: decoded_v2")
    chart_file, keda_dir = tmp_path / "chart" / "functions.yaml", tmp_path / "keda"
    shutil.copytree(keda.DEFAULT_OUT, keda_dir)
    argv = ["--stack", str(stack), "--chart-file", str(chart_file), "--keda-dir", str(keda_dir)]
    assert main([*argv, "--check"]) == 1
    assert main(argv) == 0
    assert main([*argv, "--check"]) == 0
    assert yaml.safe_load(chart_file.read_text())["functions"]["sink"]["topics"] == ["decoded_v2"]
    sink = yaml.safe_load((keda_dir / "sink-scaledobject.yaml").read_text())
    assert sink["spec"]["triggers"][0]["metadata"]["topic"] == "decoded_v2"
    assert (keda_dir / "README.md").is_file(), "the folder's README is not generated, and kept"


def test_a_function_name_that_cannot_name_a_service_is_refused() -> None:
    spec = FunctionSpec(name="Decode_2", lang="python3-http-f2", handler="./x", image="i:1")
    with pytest.raises(ConfigError, match="DNS label"):
        chart_function(spec)


def test_connector_entry__is_the_listing_shape_plus_the_service_url() -> None:
    spec = RAW.functions["decode"]
    entry = connector_entry(spec, service_url("decode", "f2pipe"), 5)
    assert entry == {
        "name": "decode",
        "url": "http://decode.f2pipe.svc:8080/",
        "replicas": 5,
        "labels": spec.labels,
        "annotations": {"topic": "raw_iot_data"},
    }
