"""Scaling specs read from labels and annotations (shared by the autoscaler and KEDA)."""

from __future__ import annotations

import pytest

from f2lib.contracts.functions import ScalingSpec, scaling_spec
from f2lib.errors import ConfigError

LABELS = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "5", "f2pipe.lag.target": "1000"}


def test_spec__read_from_labels_and_topic_annotation() -> None:
    spec = scaling_spec("decode", LABELS, {"topic": "raw_iot_data"})
    assert spec == ScalingSpec("decode", ("raw_iot_data",), 1, 5, 1000)
    assert spec.consumer_group() == "f2-connector-decode"


def test_spec__several_topics_deduplicated_in_order() -> None:
    spec = scaling_spec("fn", LABELS, {"topic": "b, a,b"})
    assert spec is not None and spec.topics == ("b", "a")


def test_spec__none_without_topic_annotation() -> None:
    assert scaling_spec("provision", LABELS, {}) is None


def test_spec__none_without_lag_target_label() -> None:
    assert scaling_spec("fn", {"com.openfaas.scale.max": "5"}, {"topic": "t"}) is None


def test_spec__min_and_max_default_as_openfaas_does() -> None:
    spec = scaling_spec("fn", {"f2pipe.lag.target": "10"}, {"topic": "t"})
    assert spec is not None and (spec.min_replicas, spec.max_replicas) == (1, 20)


@pytest.mark.parametrize(
    "labels",
    [
        {**LABELS, "f2pipe.lag.target": "many"},
        {**LABELS, "f2pipe.lag.target": "0"},
        {**LABELS, "com.openfaas.scale.min": "4", "com.openfaas.scale.max": "2"},
        {**LABELS, "com.openfaas.scale.min": "-1"},
    ],
)
def test_spec__invalid_labels_are_config_errors(labels: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        scaling_spec("fn", labels, {"topic": "t"})


def test_spec__capped_lowers_max_and_min_to_the_cap() -> None:
    spec = ScalingSpec("fn", ("t",), 7, 10, 100).capped(5)
    assert (spec.min_replicas, spec.max_replicas) == (5, 5)


def test_spec__cap_zero_means_no_cap() -> None:
    spec = ScalingSpec("fn", ("t",), 1, 10, 100)
    assert spec.capped(0) is spec
