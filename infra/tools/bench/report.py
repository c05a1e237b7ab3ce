"""The run's figures as ratios, targets and a plain-text table (stdout and docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from infra.tools.bench.stats import (
    ISSUE15_TODAY_CPU_MS,
    ISSUE15_TODAY_MSGS_PER_S,
    evaluate_targets,
    issue15_targets,
    messages_equivalent,
    ratio,
    slowest,
)


def raw_stage_rates(results: Mapping[str, Any]) -> dict[str, float]:
    """Each raw stage's limit in messages per second of the pipeline's input."""
    raw = results["raw"]
    rows_per_message = results["workload"]["rows_per_message"]
    stages = {
        "mqtt": raw["mqtt"]["per_second"],
        "kafka": raw["kafka"]["per_second"],
        "copy": messages_equivalent(raw["copy"]["per_second"], rows_per_message),
        "decode": (raw.get("decode_all_cores") or {}).get("per_second", 0.0),
    }
    return {name: value for name, value in stages.items() if value > 0}


def compute_ratios(results: Mapping[str, Any]) -> dict[str, Any]:
    """The ratios issue 6 asks for, from one run's results."""
    raw = results["raw"]
    pipeline = results["sustained"]["msgs_per_s"]
    stages = raw_stage_rates(results)
    slowest_name, slowest_rate = slowest(stages)
    stage_figures = results.get("stages") or {}
    pipeline_stages = {
        "bridge": stage_figures.get("bridge_msgs_per_s", 0.0),
        "decode": stage_figures.get("decode_msgs_per_s", 0.0),
        "sink": stage_figures.get("sink_msgs_per_s", 0.0),
    }
    slow_stage = slowest({k: v for k, v in pipeline_stages.items() if v > 0} or {"none": 0.0})
    copy_rows = raw["copy"]["per_second"]
    one_core = (raw.get("decode_one_core") or {}).get("per_second", 0.0)
    all_cores = (raw.get("decode_all_cores") or {}).get("per_second", 0.0)
    return {
        "pipeline_msgs_per_s": pipeline,
        "raw_stages_msgs_per_s": stages,
        "slowest_raw_stage": slowest_name,
        "slowest_raw_msgs_per_s": slowest_rate,
        "pipeline_stages_msgs_per_s": pipeline_stages,
        "slowest_pipeline_stage": slow_stage[0],
        "pipeline_vs_slowest_raw": ratio(pipeline, slowest_rate),
        "pipeline_vs_baseline": ratio(
            pipeline, (results.get("baseline") or {}).get("per_second", 0.0)
        ),
        "sink_vs_copy": (
            ratio(stage_figures["sink_rows_per_s"], copy_rows)
            if stage_figures.get("sink_rows_per_s")
            else None
        ),
        "sink_core_vs_copy": ratio(raw["sink_core"]["per_second"], copy_rows),
        "decode_per_core_msgs_per_s": one_core,
        "decode_scaling_all_cores": ratio(all_cores, one_core),
        "decode_stage_vs_decode_core": ratio(pipeline_stages["decode"], one_core),
        **peer_ratios(results),
    }


def cpu_total(figures: Mapping[str, Any] | None) -> float | None:
    """CPU ms per message over every process of a run's phase (None when not measured)."""
    per = (figures or {}).get("cpu_ms_per_message")
    return sum(per.values()) if per else None


def peer_ratios(results: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 15's ratios: f2pipe's drain against Telegraf's, the raw MQTT clients, COPY."""
    raw = results["raw"]
    drain, peer = results.get("drain") or {}, results.get("peer") or {}
    ours_cpu, peer_cpu = cpu_total(drain), cpu_total(peer)
    c_clients = (raw.get("mqtt_c") or {}).get("per_second", 0.0)
    return {
        "drain_vs_telegraf": ratio(drain.get("msgs_per_s", 0.0), peer.get("msgs_per_s", 0.0)),
        "cpu_drain_vs_telegraf": ratio(ours_cpu or 0.0, peer_cpu or 0.0),
        "telegraf_vs_mqtt_c_clients": ratio(peer.get("msgs_per_s", 0.0), c_clients),
        "drain_vs_mqtt_c_clients": ratio(drain.get("msgs_per_s", 0.0), c_clients),
        "drain_vs_mqtt_paho": ratio(drain.get("msgs_per_s", 0.0), raw["mqtt"]["per_second"]),
        "paho_vs_c_clients": ratio(raw["mqtt"]["per_second"], c_clients),
    }


def targets(
    results: Mapping[str, Any], before: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Issue 6's targets, then issue 15's (before: an earlier run's JSON, else the issue's
    figures of the code before it)."""
    ratios = results["ratios"]
    growths = [
        level["anon_kib"]["growth"]
        for level in (results.get("burst") or {}).get("memory", {}).values()
    ]
    known = [g for g in growths if g is not None]
    found = evaluate_targets(
        pipeline_vs_baseline=ratios["pipeline_vs_baseline"],
        pipeline_vs_slowest_raw=ratios["pipeline_vs_slowest_raw"],
        sink_vs_copy=ratios["sink_vs_copy"],
        p99_s=(results.get("latency") or {}).get("latency", {}).get("p99"),
        worst_memory_growth=max(known) if known else None,
    )
    sustained = results["sustained"]
    if before is not None:
        before_rate = before["sustained"]["msgs_per_s"]
        before_cpu = cpu_total(before["sustained"])
    else:
        before_rate, before_cpu = ISSUE15_TODAY_MSGS_PER_S, ISSUE15_TODAY_CPU_MS
    found += issue15_targets(
        cpu_vs_before=ratio(cpu_total(sustained) or 0.0, before_cpu or 0.0),
        cpu_vs_peer=ratios.get("cpu_drain_vs_telegraf"),
        rate_vs_before=ratio(sustained["msgs_per_s"], before_rate),
        rate_vs_peer=ratios.get("drain_vs_telegraf"),
        p99_s=(results.get("latency") or {}).get("latency", {}).get("p99"),
        sink_vs_copy=ratios["sink_vs_copy"],
        worst_memory_growth=max(known) if known else None,
    )
    return [{**asdict(t), "met": t.met} for t in found]


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def render_table(results: Mapping[str, Any]) -> str:
    """Every headline figure of a run, as aligned text."""
    raw = results["raw"]
    lines: list[tuple[str, str, str]] = [
        ("raw: MQTT publish->subscribe, QoS 1 (paho)", _fmt(raw["mqtt"]["per_second"]), "msg/s"),
        (
            "raw: MQTT mosquitto_pub -l -> mosquitto_sub, QoS 1",
            _fmt((raw.get("mqtt_c") or {}).get("per_second")),
            "msg/s",
        ),
        (
            "raw: Kafka produce->consume (kafka-python)",
            _fmt((raw.get("kafka_kafka-python") or raw["kafka"])["per_second"]),
            "rec/s",
        ),
        (
            "raw: Kafka produce->consume (confluent-kafka)",
            _fmt((raw.get("kafka_confluent") or {}).get("per_second")),
            "rec/s",
        ),
        ("raw: psql \\copy into iot_measurements", _fmt(raw["copy"]["per_second"]), "rows/s"),
        (
            "sink write path in process (TimescaleSink)",
            _fmt(raw["sink_core"]["per_second"]),
            "rows/s",
        ),
    ]
    if "decode_one_core" in raw:
        lines += _core_lines(results)
    lines += _pipeline_lines(results)
    return _table(lines, results)


def _core_lines(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["raw"]
    return [
        (
            "raw: decode core, 1 process (per core)",
            _fmt(raw["decode_one_core"]["per_second"]),
            "msg/s",
        ),
        (
            f"raw: decode core, {raw['decode_all_cores']['detail']['processes']} processes",
            _fmt(raw["decode_all_cores"]["per_second"]),
            "msg/s",
        ),
        (
            "decode function CPU path, no I/O (1 process)",
            _fmt(raw["decode_handler_core"]["per_second"]),
            "msg/s",
        ),
        ("per-message baseline (POC design)", _fmt(results["baseline"]["per_second"]), "msg/s"),
    ]


def _pipeline_lines(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    ratios = results["ratios"]
    rpm = results["workload"]["rows_per_message"]
    lines: list[tuple[str, str, str]] = []
    stages = results.get("stages")
    if stages:
        lines += [
            (
                "pipeline stage alone: bridge (MQTT->raw_iot_data)",
                _fmt(stages["bridge_msgs_per_s"]),
                "msg/s",
            ),
            (
                "pipeline stage alone: decode (raw->decoded)",
                _fmt(stages["decode_msgs_per_s"]),
                "msg/s",
            ),
            (
                "pipeline stage alone: sink (decoded->rows)",
                _fmt(stages["sink_rows_per_s"]),
                "rows/s",
            ),
        ]
    sustained = results["sustained"]
    lines.append(
        ("END TO END sustained, publish->committed row", _fmt(sustained["msgs_per_s"]), "msg/s")
    )
    lines.append(("  (rows per message)", _fmt(rpm, 3), "rows"))
    drain, peer = results.get("drain"), results.get("peer")
    if drain:
        lines.append(
            ("END TO END backlog drain (bridge resumed->row)", _fmt(drain["msgs_per_s"]), "msg/s")
        )
    if peer:
        lines.append(("PEER Telegraf backlog drain (resumed->row)", _fmt(peer["msgs_per_s"]),
                      "msg/s"))  # fmt: skip
    for one in results.get("scaling") or []:
        lines.append(
            (
                f"  drain, decode+sink x{one['replicas']['decode']}, bridges x{one['bridges']}",
                _fmt(one["msgs_per_s"]),
                "msg/s",
            )
        )
    latency = results.get("latency")
    if latency:
        summary = latency["latency"]
        lines.append(
            (
                f"latency at {latency['rate_per_s']:.0f} msg/s: p50 / p95 / p99",
                f"{summary['p50'] * 1000:.0f} / {summary['p95'] * 1000:.0f} / "
                f"{summary['p99'] * 1000:.0f}",
                "ms",
            )
        )
    lines += [
        (
            f"ratio end-to-end / slowest raw stage ({ratios['slowest_raw_stage']})",
            _fmt(ratios["pipeline_vs_slowest_raw"], 3),
            "x",
        ),
        ("ratio end-to-end / per-message baseline", _fmt(ratios["pipeline_vs_baseline"], 2), "x"),
        ("ratio drain / Telegraf's drain", _fmt(ratios.get("drain_vs_telegraf"), 3), "x"),
        (
            "ratio CPU per message / Telegraf stack's",
            _fmt(ratios.get("cpu_drain_vs_telegraf"), 2),
            "x",
        ),
        ("ratio drain / MQTT C clients", _fmt(ratios.get("drain_vs_mqtt_c_clients"), 3), "x"),
        ("ratio Telegraf / MQTT C clients", _fmt(ratios.get("telegraf_vs_mqtt_c_clients"), 3), "x"),
        ("ratio paho / MQTT C clients", _fmt(ratios.get("paho_vs_c_clients"), 3), "x"),
        ("ratio sink stage / raw COPY", _fmt(ratios["sink_vs_copy"], 3), "x"),
        ("ratio sink write path / raw COPY", _fmt(ratios["sink_core_vs_copy"], 3), "x"),
        ("slowest pipeline stage", str(ratios["slowest_pipeline_stage"]), ""),
    ]
    return lines


def _table(lines: list[tuple[str, str, str]], results: Mapping[str, Any]) -> str:
    sustained = results["sustained"]
    latency = results.get("latency")
    width = max(len(label) for label, _, _ in lines)
    value_width = max(len(value) for _, value, _ in lines)
    out = [
        f"{label:<{width}}  {value:>{value_width}} {unit}".rstrip() for label, value, unit in lines
    ]
    cpu = sustained.get("cpu_ms_per_message") or {}
    if cpu:
        out.append("")
        out.append("CPU per message during the sustained run (ms), by process:")
        ranked = sorted(cpu.items(), key=lambda item: -item[1])
        out.append("  " + ", ".join(f"{name} {ms:.3f}" for name, ms in ranked))
        out.append(f"  total {sum(cpu.values()):.3f} ms/message")
    for title, key in (("backlog drain", "drain"), ("Telegraf's backlog drain", "peer")):
        per = (results.get(key) or {}).get("cpu_ms_per_message") or {}
        if per:
            ranked = sorted(per.items(), key=lambda item: -item[1])
            out.append(f"CPU per message during the {title} (ms):")
            out.append("  " + ", ".join(f"{name} {ms:.3f}" for name, ms in ranked))
            out.append(f"  total {sum(per.values()):.3f} ms/message")
    stages_latency = (latency or {}).get("stages") or {}
    if stages_latency:
        out.append("")
        out.append("latency by stage, p50 / p99 (ms):")
        out.append(
            "  "
            + ", ".join(
                f"{name} {figures['p50'] * 1000:.0f} / {figures['p99'] * 1000:.0f}"
                for name, figures in stages_latency.items()
            )
        )
    burst = results.get("burst")
    if burst:
        out.append("")
        out.append(
            f"memory during a burst of {burst['burst_messages']} messages at "
            f"{burst['achieved_burst_per_s']:.0f} msg/s (asked {burst['burst_per_s']:.0f}, "
            f"10 x the steady {burst['steady_per_s']:.0f} msg/s), MiB:"
        )
        out.append(
            f"  {'process':<12} {'RSS before':>10} {'peak':>7} {'after':>7}   "
            f"{'heap before':>11} {'peak':>7} {'growth':>7}"
        )
        for name, level in burst["memory"].items():
            rss, anon = level["rss_kib"], level["anon_kib"]
            growth = anon["growth"]
            out.append(
                f"  {name:<12} {rss['before'] / 1024:>10.1f} {rss['peak'] / 1024:>7.1f} "
                f"{rss['after'] / 1024:>7.1f}   {anon['before'] / 1024:>11.1f} "
                f"{anon['peak'] / 1024:>7.1f} "
                f"{'-' if growth is None else f'{growth * 100:+.0f}%':>7}"
            )
    out.append("")
    out.append("targets (issue 6, then issue 15):")
    for target in results["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        out.append(
            f"  {target['name']:<48} {_fmt(target['measured'], 3):>10} "
            f"{target['comparison']} {target['bound']:<5.3g} {verdict}"
        )
    return "\n".join(out)
