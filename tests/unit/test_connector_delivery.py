"""Delivery rules: retry what may pass later, bisect a refused batch down to its poison records."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pytest
import requests

from f2lib.backoff import Backoff
from f2lib.contracts.invocation import encode_record
from f2lib.errors import DeliveryAbandoned, GatewayError, StreamError
from infra.services.connector.batching import Batch
from infra.services.connector.delivery import BatchDelivery, is_refusal
from infra.services.connector.metrics import ConnectorMetrics
from infra.services.connector.targets import targets_from_listing
from infra.services.kit.openfaas import Invocation

NO_WAIT = Backoff(base_s=0.001, cap_s=0.002, jitter=0)


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def batch_of(offsets: Sequence[int]) -> Batch:
    return Batch(
        tuple(
            encode_record(Rec("raw_iot_data", 1, o, b"f2-a1b2c3d4e5f6", b'{"n": %d}' % o))
            for o in offsets
        )
    )


class ScriptedFunction:
    """Refuses (422) any batch holding a poison offset; answers queued statuses first."""

    def __init__(self, poison: set[int] = frozenset(), script: Sequence[object] = ()) -> None:
        self.poison = set(poison)
        self.script = list(script)
        self.calls: list[list[int]] = []
        self.delivered: list[int] = []

    def invoke(self, function: str, body: bytes, headers: Mapping[str, str]) -> Invocation:
        offsets = [item["offset"] for item in json.loads(body)]
        assert headers["X-Kafka-Offset"] == str(offsets[0])
        assert headers["X-F2-Batch"] == str(len(offsets))
        self.calls.append(offsets)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            assert isinstance(step, int)
            return Invocation(step, "scripted")
        bad = self.poison.intersection(offsets)
        if bad:
            return Invocation(422, f"offset {min(bad)} has no device parameters")
        self.delivered.extend(offsets)
        return Invocation(200, json.dumps({"decoded": len(offsets)}))


class Letters:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.written: list[tuple[str | None, dict[str, object]]] = []

    def write(self, letters: Sequence[tuple[str | None, bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            raise StreamError("kafka down")
        self.written.extend((key, json.loads(value)) for key, value in letters)


def delivery(function: ScriptedFunction, letters: Letters) -> BatchDelivery:
    return BatchDelivery("decode", function, letters, ConnectorMetrics(), NO_WAIT)


def test_deliver__a_good_batch_is_one_call() -> None:
    fn, letters = ScriptedFunction(), Letters()
    report = delivery(fn, letters).deliver(batch_of(range(8)), threading.Event())
    assert fn.calls == [list(range(8))]
    assert (report.delivered, report.dead_lettered, report.calls) == (8, 0, 1)


@pytest.mark.parametrize("poison", [{0}, {5}, {15}, {3, 12}, {6, 7}])
def test_deliver__bisection_isolates_poison_and_delivers_the_rest_in_order(
    poison: set[int],
) -> None:
    fn, letters = ScriptedFunction(poison=poison), Letters()
    report = delivery(fn, letters).deliver(batch_of(range(16)), threading.Event())
    assert fn.delivered == [o for o in range(16) if o not in poison]
    assert report.delivered == 16 - len(poison)
    assert sorted(letter["source"]["offset"] for _, letter in letters.written) == sorted(poison)
    assert report.calls <= 1 + 2 * 4 * len(poison)  # log2(16) levels per poison record


def test_deliver__dead_letter_carries_stage_reason_record_and_source() -> None:
    fn, letters = ScriptedFunction(poison={2}), Letters()
    delivery(fn, letters).deliver(batch_of(range(4)), threading.Event())
    ((key, letter),) = letters.written
    assert key == "f2-a1b2c3d4e5f6"
    assert letter["stage"] == "connector:decode"
    assert letter["reason"] == "offset 2 has no device parameters"
    assert letter["error"] == "HTTP 422 from function decode"
    assert letter["record"] == {"n": 2}
    assert letter["source"] == {
        "topic": "raw_iot_data",
        "partition": 1,
        "offset": 2,
        "function": "decode",
    }


def test_deliver__5xx_and_timeouts_are_retried_with_the_same_batch_never_skipped() -> None:
    timeout = GatewayError("timed out")
    timeout.__cause__ = requests.Timeout()
    fn = ScriptedFunction(script=[503, timeout, GatewayError("refused"), 500])
    metrics = ConnectorMetrics()
    report = BatchDelivery("decode", fn, Letters(), metrics, NO_WAIT).deliver(
        batch_of(range(4)), threading.Event()
    )
    assert fn.calls == [[0, 1, 2, 3]] * 5
    assert fn.delivered == [0, 1, 2, 3]
    assert report.delivered == 4
    sample = metrics.registry.get_sample_value
    assert sample("f2_connector_retries_total", {"function": "decode", "reason": "http_503"}) == 1
    assert sample("f2_connector_retries_total", {"function": "decode", "reason": "timeout"}) == 1
    assert sample("f2_connector_retries_total", {"function": "decode", "reason": "connection"}) == 1


@pytest.mark.parametrize("status", [404, 429, 408, 401])
def test_deliver__gateway_side_4xx_is_retried_not_bisected(status: int) -> None:
    fn, letters = ScriptedFunction(script=[status]), Letters()
    delivery(fn, letters).deliver(batch_of(range(4)), threading.Event())
    assert fn.calls == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert letters.written == []
    assert not is_refusal(status)


def test_deliver__cancel_during_retries_abandons_the_batch() -> None:
    fn = ScriptedFunction(script=[503] * 1000)
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    with pytest.raises(DeliveryAbandoned):
        delivery(fn, Letters()).deliver(batch_of(range(2)), cancel)
    assert fn.delivered == []


def test_deliver__dead_letter_write_failure_is_retried_before_returning() -> None:
    fn, letters = ScriptedFunction(poison={1}), Letters(failures=2)
    report = delivery(fn, letters).deliver(batch_of(range(3)), threading.Event())
    assert report.dead_lettered == 1
    assert len(letters.written) == 1


def test_targets_from_listing__keeps_annotated_functions_and_splits_topics() -> None:
    listing = [
        {"name": "decode", "replicas": 2, "annotations": {"topic": "raw_iot_data"}},
        {"name": "multi", "replicas": 1, "annotations": {"topic": " a, b ,,a "}},
        {"name": "provision", "replicas": 1, "annotations": {}},
        {"name": "nolabels", "replicas": 1},
        {"name": "zero", "replicas": None, "labels": {}, "annotations": {"topic": "t"}},
        "garbage",
    ]
    targets = {t.name: t for t in targets_from_listing(listing)}
    assert set(targets) == {"decode", "multi", "zero"}
    assert targets["decode"].topics == ("raw_iot_data",) and targets["decode"].replicas == 2
    assert targets["multi"].topics == ("a", "b")
    assert targets["zero"].replicas == 0
    with pytest.raises(GatewayError):
        targets_from_listing({"not": "a list"})
