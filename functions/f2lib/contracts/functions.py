"""The stack.yml annotations and labels f2pipe reads, and what they mean.

One source for the connector (``topic``: the Kafka topics it feeds the function from), the
autoscaler (which reads them from ``GET /system/functions``), the local runtime and the KEDA
generator (which read them from stack.yml): ``com.openfaas.scale.min``,
``com.openfaas.scale.max``, ``f2pipe.lag.target`` (records of lag per replica) and the
``topic`` annotation (comma-separated). The connector consumes a function's topics in the
consumer group ``f2-connector-<function>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from f2lib.errors import ConfigError

MIN_LABEL = "com.openfaas.scale.min"
MAX_LABEL = "com.openfaas.scale.max"
LAG_TARGET_LABEL = "f2pipe.lag.target"
TOPIC_ANNOTATION = "topic"
CONNECTOR_GROUP_PREFIX = "f2-connector-"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 20
# Scale-down waits this long after the last recommendation above the new count (both the
# autoscaler's default and the KEDA scale-down stabilization window).
DEFAULT_COOLDOWN_SECONDS = 120
# OpenFaaS CE on Kubernetes accepts 1-5 replicas through /system/scale-function.
OPENFAAS_CE_MAX_REPLICAS = 5


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """What a function asks of the autoscaler: its topics, replica bounds and lag target."""

    function: str
    topics: tuple[str, ...]
    min_replicas: int
    max_replicas: int
    lag_target: int

    def consumer_group(self, prefix: str = CONNECTOR_GROUP_PREFIX) -> str:
        """The connector's consumer group feeding this function."""
        return consumer_group(self.function, prefix)

    def capped(self, cap: int | None) -> ScalingSpec:
        """The spec with ``max_replicas`` (and ``min_replicas``) no higher than ``cap``."""
        if cap is None or cap <= 0 or self.max_replicas <= cap:
            return self
        minimum = min(self.min_replicas, cap)
        return ScalingSpec(self.function, self.topics, minimum, cap, self.lag_target)


def topics_of(annotations: Mapping[str, str] | None) -> tuple[str, ...]:
    """The Kafka topics of a ``topic`` annotation, in order, each once (empty when absent)."""
    raw = (annotations or {}).get(TOPIC_ANNOTATION)
    if not isinstance(raw, str):
        return ()
    return tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))


def consumer_group(function: str, prefix: str = CONNECTOR_GROUP_PREFIX) -> str:
    """The connector's consumer group feeding ``function``."""
    return f"{prefix}{function}"


def replica_bounds(function: str, labels: Mapping[str, str] | None) -> tuple[int, int]:
    """``(min, max)`` replicas from the scale labels (defaults 1 and 20)."""
    labels = labels or {}
    return (
        _int_label(function, labels, MIN_LABEL, DEFAULT_MIN_REPLICAS),
        _int_label(function, labels, MAX_LABEL, DEFAULT_MAX_REPLICAS),
    )


def _int_label(function: str, labels: Mapping[str, str], name: str, default: int) -> int:
    raw = labels.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return int(str(raw).strip())
    except ValueError as exc:
        raise ConfigError(f"function {function}: label {name}={raw!r} is not an integer") from exc


def scaling_spec(
    function: str, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None
) -> ScalingSpec | None:
    """The function's spec, or None when it is not lag-scaled (no topic or no lag target)."""
    labels = labels or {}
    topics = topics_of(annotations)
    if not topics or labels.get(LAG_TARGET_LABEL) is None:
        return None
    lag_target = _int_label(function, labels, LAG_TARGET_LABEL, 0)
    minimum, maximum = replica_bounds(function, labels)
    if lag_target < 1:
        raise ConfigError(f"function {function}: {LAG_TARGET_LABEL} must be >= 1")
    if minimum < 0 or maximum < max(minimum, 1):
        raise ConfigError(
            f"function {function}: need 0 <= {MIN_LABEL} ({minimum}) <= {MAX_LABEL} ({maximum})"
        )
    return ScalingSpec(function, topics, minimum, maximum, lag_target)
