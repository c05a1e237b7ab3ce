"""Function-side metrics: series names, outcomes, end-to-end latency, one registry per replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from f2lib.metrics import FunctionMetrics, function_metrics, outcome_of, record_error_reasons

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def metrics() -> FunctionMetrics:
    return FunctionMetrics(process_metrics=False, clock=lambda: NOW.timestamp())


def sample(m: FunctionMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (202, "ok"), (400, "refused"), (405, "refused"), (503, "retry"), (500, "error")],
)
def test_outcome_of_status(status: int, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_invocation_counts_by_code_and_outcome_and_times_the_handler() -> None:
    m = metrics()
    m.observe_invocation(200, 0.2)
    m.observe_invocation(503, 0.1)
    assert sample(m, "f2_function_invocations_total", code="200", outcome="ok") == 1
    assert sample(m, "f2_function_invocations_total", code="503", outcome="retry") == 1
    assert sample(m, "f2_function_handler_duration_seconds_count", outcome="ok") == 1
    assert sample(m, "f2_function_handler_duration_seconds_sum", outcome="ok") == pytest.approx(0.2)
    assert sample(m, "f2_function_last_success_timestamp_seconds") == NOW.timestamp()


def test_records_in_and_out_by_kind() -> None:
    m = metrics()
    m.received(10)
    m.emitted("measurement", 12)
    m.emitted("dead_letter", 1)
    assert sample(m, "f2_function_records_in_total") == 10
    assert sample(m, "f2_function_records_out_total", kind="measurement") == 12
    assert sample(m, "f2_function_records_out_total", kind="dead_letter") == 1
    assert sample(m, "f2_function_records_out_total", kind="stored") == 0


def test_decode_failures_by_reason_exist_at_zero_for_every_record_error() -> None:
    m = metrics()
    assert {"unknown_device", "bad_topic", "bad_timestamp"} <= set(record_error_reasons())
    assert sample(m, "f2_decode_failures_total", reason="unknown_device") == 0
    m.decode_failed(["unknown_device", "unknown_device", "bad_payload"])
    assert sample(m, "f2_decode_failures_total", reason="unknown_device") == 2
    assert sample(m, "f2_decode_failures_total", reason="bad_payload") == 1


def test_sink_rows_and_duplicates() -> None:
    m = metrics()
    m.rows_written(inserted=7, duplicates=3)
    assert sample(m, "f2_sink_rows_inserted_total") == 7
    assert sample(m, "f2_sink_duplicates_skipped_total") == 3


def test_end_to_end_latency_from_device_time_to_commit() -> None:
    m = metrics()
    naive = (NOW - timedelta(seconds=2)).replace(tzinfo=None)
    m.observe_end_to_end([NOW - timedelta(seconds=0.3), naive], committed_at=NOW)
    assert sample(m, "f2_pipeline_end_to_end_latency_seconds_count") == 2
    assert sample(m, "f2_pipeline_end_to_end_latency_seconds_sum") == pytest.approx(2.3)
    assert sample(m, "f2_pipeline_end_to_end_latency_seconds_bucket", le="0.5") == 1


def test_end_to_end_latency_of_a_device_clock_ahead_counts_as_zero() -> None:
    m = metrics()
    m.observe_end_to_end([NOW + timedelta(seconds=5)], committed_at=NOW)
    assert sample(m, "f2_pipeline_end_to_end_latency_seconds_bucket", le="0.05") == 1


def test_provisioning_actions_and_refusals() -> None:
    m = metrics()
    m.certificate("issued")
    m.certificate("revoked")
    m.refused("invalid_mac")
    assert sample(m, "f2_provision_certificates_total", action="issued") == 1
    assert sample(m, "f2_provision_certificates_total", action="rotated") == 0
    assert sample(m, "f2_provision_certificates_total", action="revoked") == 1
    assert sample(m, "f2_provision_refused_total", reason="invalid_mac") == 1


def test_render_is_prometheus_text_with_process_metrics() -> None:
    m = FunctionMetrics()
    m.received(1)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    assert b"f2_function_records_in_total 1.0" in body
    assert b"process_resident_memory_bytes" in body


def test_function_metrics_is_one_instance_per_process() -> None:
    assert function_metrics() is function_metrics()
