"""The benchmark's computations: percentiles, rates, ratios, memory flatness, targets, table."""

from __future__ import annotations

import pytest

from infra.tools.bench.pipeline import Progress
from infra.tools.bench.report import compute_ratios, render_table, targets
from infra.tools.bench.stats import (
    MemoryLevel,
    evaluate_targets,
    memory_level,
    messages_equivalent,
    percentile,
    rate,
    ratio,
    slowest,
    summarize_latency,
)


def test_percentile__interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_percentile__of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary__orders_its_percentiles() -> None:
    summary = summarize_latency([0.5, 0.1, 0.2, 0.9, 0.3])
    assert summary.count == 5
    assert summary.p50 == pytest.approx(0.3)
    assert summary.p50 <= summary.p95 <= summary.p99 <= summary.max == 0.9
    assert summary.mean == pytest.approx(0.4)


def test_rate_and_ratio__are_zero_or_none_when_nothing_was_timed() -> None:
    assert rate(1000, 2.0) == 500.0
    assert rate(1000, 0.0) == 0.0
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(10.0, 0.0) is None
    assert messages_equivalent(1200.0, 1.2) == pytest.approx(1000.0)


def test_slowest__picks_the_lowest_rate() -> None:
    assert slowest({"mqtt": 4000.0, "kafka": 7000.0, "decode": 3000.0}) == ("decode", 3000.0)


def test_memory_level__before_is_a_mean_peak_a_maximum_after_a_mean() -> None:
    samples = [(0.0, 100.0), (1.0, 110.0), (2.0, 130.0), (3.0, 125.0), (5.0, 105.0), (6.0, 95.0)]
    level = memory_level(samples, burst_start=2.0, burst_end=3.0, after_start=5.0)
    assert level.before == pytest.approx(105.0)
    assert level.peak == 130.0
    assert level.after == pytest.approx(100.0)
    assert level.growth == pytest.approx(130.0 / 105.0 - 1)
    assert level.flat(0.2) is False
    assert MemoryLevel(before=100.0, peak=115.0, after=100.0).flat(0.2) is True
    assert MemoryLevel(before=0.0, peak=10.0, after=0.0).flat() is None


def test_targets__compare_each_figure_with_its_bound() -> None:
    found = {
        t.name: t.met
        for t in evaluate_targets(
            pipeline_vs_baseline=12.0,
            pipeline_vs_slowest_raw=0.4,
            sink_vs_copy=None,
            p99_s=0.8,
            worst_memory_growth=0.2,
        )
    }
    assert found == {
        "end-to-end / per-message baseline": True,
        "end-to-end / slowest raw stage": False,
        "sink / raw COPY": None,
        "p99 latency at half the sustained max (s)": True,
        "memory growth during the burst (worst process)": True,
    }


def test_progress__steady_rate_counts_from_the_first_move() -> None:
    progress = Progress(start_value=100, goal=1100, started=0.0)
    assert not progress.observe(100, 1.0)  # nothing yet: the consumer is rejoining
    assert not progress.observe(300, 2.0)  # first move
    assert progress.observe(1100, 4.0)
    assert progress.steady_rate() == pytest.approx(800 / 2.0)


def results() -> dict[str, object]:
    def stage(per_second: float, **detail: object) -> dict[str, object]:
        return {"per_second": per_second, "detail": detail}

    return {
        "workload": {"rows_per_message": 1.2},
        "raw": {
            "mqtt": stage(4000.0),
            "kafka": stage(6000.0),
            "copy": stage(24000.0),
            "decode_one_core": stage(20000.0),
            "decode_all_cores": stage(36000.0, processes=2),
            "decode_handler_core": stage(12000.0),
            "sink_core": stage(18000.0),
        },
        "baseline": {"per_second": 400.0},
        "stages": {
            "bridge_msgs_per_s": 2500.0,
            "decode_msgs_per_s": 5000.0,
            "sink_rows_per_s": 12000.0,
            "sink_msgs_per_s": 10000.0,
        },
        "sustained": {"msgs_per_s": 2000.0, "cpu_ms_per_message": {"bridge": 0.2}},
        "latency": {
            "rate_per_s": 1000.0,
            "latency": {"p50": 0.2, "p95": 0.5, "p99": 0.9},
            "stages": {"mqtt": {"p50": 0.001, "p99": 0.004}, "sink": {"p50": 0.1, "p99": 0.4}},
        },
        "burst": {
            "steady_per_s": 1000.0,
            "burst_per_s": 10000.0,
            "burst_seconds": 5.0,
            "burst_messages": 45000,
            "achieved_burst_per_s": 6000.0,
            "memory": {
                "bridge": {
                    "rss_kib": {"before": 1000, "peak": 1100, "after": 1000, "growth": 0.1},
                    "anon_kib": {"before": 500, "peak": 550, "after": 500, "growth": 0.1},
                },
                "postgres": {
                    "rss_kib": {"before": 1000, "peak": 2000, "after": 1000, "growth": 1.0},
                    "anon_kib": {"before": 1000, "peak": 1150, "after": 1000, "growth": 0.15},
                },
            },
        },
    }


def test_ratios__use_the_slowest_raw_stage_in_messages_and_rows_for_the_sink() -> None:
    data = results()
    ratios = compute_ratios(data)
    assert ratios["raw_stages_msgs_per_s"]["copy"] == pytest.approx(20000.0)
    assert ratios["slowest_raw_stage"] == "mqtt"
    assert ratios["pipeline_vs_slowest_raw"] == pytest.approx(0.5)
    assert ratios["pipeline_vs_baseline"] == pytest.approx(5.0)
    assert ratios["sink_vs_copy"] == pytest.approx(0.5)
    assert ratios["sink_core_vs_copy"] == pytest.approx(0.75)
    assert ratios["decode_scaling_all_cores"] == pytest.approx(1.8)
    assert ratios["slowest_pipeline_stage"] == "bridge"


def test_targets_of_a_run__judge_memory_by_the_heap_and_render_a_table() -> None:
    data = results()
    data["ratios"] = compute_ratios(data)
    found = {t["name"]: t for t in targets(data)}
    memory = found["memory growth during the burst (worst process)"]
    assert memory["measured"] == pytest.approx(0.15)
    assert memory["met"] is True
    assert found["end-to-end / per-message baseline"]["met"] is False
    data["targets"] = targets(data)
    table = render_table(data)
    assert "END TO END sustained" in table
    assert "MISSED" in table
    assert "200 / 500 / 900 ms" in table
    assert "sink 100 / 400" in table
