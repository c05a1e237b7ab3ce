"""Fuzzed decoded records into the sink's validation: a measurement or a dead letter, never a
crash (an exception out of the batch is a 500 the connector retries for ever)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from f2lib.contracts.invocation import ConnectorRecord
from sink.handler import INVALID_REASON, split
from tests.fuzz_support import JSON_VALUES, measurement_values


def record(value: Any) -> ConnectorRecord:
    return ConnectorRecord(topic="decoded_iot_data", partition=0, offset=0, key=None, value=value)


@given(value=st.one_of(measurement_values(), JSON_VALUES, measurement_values().map(json.dumps)))
def test_split__each_record_is_a_measurement_or_a_dead_letter(value: Any) -> None:
    valid, overwrite, dead = split([record(value)])
    assert not overwrite
    assert len(valid) + len(dead) == 1
    if dead:
        letter = dead[0].to_value()
        assert letter["stage"] == "sink" and letter["reason"] == INVALID_REASON
        assert letter["error"]
    else:
        (measurement,) = valid
        measurement.to_json_bytes().decode("utf-8")  # what decode produced can be sent again
        for text in (measurement.value_text, measurement.unit, measurement.topic):
            assert text is None or "\x00" not in text
