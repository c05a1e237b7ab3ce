"""The reprocess's pure parts: the device-time span of raw records, the row comparison, the
summary."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from infra.tools.replay.window import TimeWindow
from infra.tools.reprocess.rows import RowChanges, compare, device_times
from infra.tools.reprocess.runner import ReprocessSummary

DEVICE = "f2-e4fd45f654be"
T1 = datetime(2025, 6, 1, 12, 0, 1, tzinfo=UTC)
T2 = datetime(2025, 6, 1, 12, 0, 2, tzinfo=UTC)


def raw(timestamp: str | None) -> bytes:
    payload = json.dumps({"timestamp": timestamp, "data": "00fa"} if timestamp else {"x": 1})
    return json.dumps({"topic": f"cmnd/{DEVICE}/sensor-mode/J3/sensor-3",
                       "payload": payload}).encode()  # fmt: skip


def test_device_times__span_of_the_payload_timestamps_skipping_unreadable_records() -> None:
    values = [raw("2025-06-01 12:00:02"), b"junk", None, raw(None), raw("2025-06-01 12:00:01")]
    assert device_times(values) == (T1, T2)
    assert device_times([b"junk"]) is None


def test_compare__updated_unchanged_inserted_and_missing_by_natural_key() -> None:
    key = (DEVICE, "t", T1, "3")
    other, new, lost = (DEVICE, "t", T2, "3"), (DEVICE, "u", T1, "3"), (DEVICE, "v", T1, "3")
    before = {key: (25.0,), other: (26.0,)}
    after = {key: (2.5,), other: (26.0,), new: (1.0,)}
    assert compare(before, after, [key, other, new, lost, key]) == RowChanges(1, 1, 1, 1)


def test_summary__reports_read_redecoded_updated_unchanged() -> None:
    summary = ReprocessSummary(DEVICE, "run1", TimeWindow(0), False, read=200, sent=200,
                               decoded=200, rows=RowChanges(updated=198, unchanged=2),
                               confirmed=True)  # fmt: skip
    summary.dead_lettered = Counter({"decoding_failed": 1})
    text = summary.render()
    assert "read 200 raw record(s)" in text
    assert "re-decoded 200 measurement(s), 1 record(s) dead-lettered (1 decoding_failed)" in text
    assert "rows updated 198, unchanged 2, inserted 0" in text
    assert "NOT CONFIRMED" not in text
    body = summary.to_json()
    assert (body["updated"], body["unchanged"], body["confirmed"]) == (198, 2, True)
    assert "NOT CONFIRMED" in ReprocessSummary(DEVICE, "r", TimeWindow(0), False, read=1).render()
