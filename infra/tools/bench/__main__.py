"""``python -m infra.tools.bench`` (``make bench``): every figure in one run, on a stack of its own.

The harness starts a LocalStack in a temporary folder on free ports (never the user's running
stack), registers simulated devices, measures the raw limits, the per-message baseline, the
pipeline's stages alone, the pipeline end to end (sustained rate, then latency at half of it),
and memory during a burst; prints a table and writes every figure to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from infra.local.settings import RuntimeConfig
from infra.local.stack import (
    DEVICES_DB,
    MONITOR_USER,
    TIMESERIES_DB,
    LocalStack,
    StackPorts,
)
from infra.services.kit.openfaas import TimeoutConfig
from infra.tools.bench import baseline, pipeline, raw
from infra.tools.bench.machine import CpuAccount, calibration_ms, machine_facts, polluted, versions
from infra.tools.bench.publisher import PublisherPool
from infra.tools.bench.report import compute_ratios, render_table, targets
from infra.tools.bench.settings import Sizes, settings
from infra.tools.bench.workload import Fleet, device_ids, load_components, register_devices

logger = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


@dataclass
class BenchStack(LocalStack):
    """A LocalStack whose functions get extra environment (``--function-env``)."""

    function_overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    def function_env(self) -> dict[str, dict[str, str]]:
        env = super().function_env()
        for function, values in self.function_overrides.items():
            env.setdefault(function, {}).update(values)
        return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (about 4 minutes)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "latest.json")
    parser.add_argument("--label", default="", help="a note stored in the JSON (e.g. 'before')")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the bridge and connector (e.g. CONNECTOR_LINGER_MS=20)",
    )
    parser.add_argument(
        "--function-env",
        action="append",
        default=[],
        metavar="FN:KEY=VALUE",
        help="environment of one function's replicas (e.g. sink:F2_WAITRESS_THREADS=8)",
    )
    parser.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="FN=N",
        help="function replicas (default: stack.yml's scale.min)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["stages", "latency", "burst"],
        help="leave a phase out",
    )
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="let the autoscaler scale functions (default: it runs with AUTOSCALER_DRY_RUN=true)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running and its folder in place (printed)",
    )
    return parser.parse_args(argv)


def _pairs(items: list[str], sep: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise SystemExit(f"expected KEY{sep}VALUE, got {item!r}")
        pairs[key] = value
    return pairs


class Run:
    """One benchmark run: its stack, its phases with CPU accounting, and its results.

    ``service_env`` goes to the stack's bridge, connector and autoscaler over the environment
    they would inherit (``--env``, and AUTOSCALER_DRY_RUN unless ``--autoscale``).
    """

    def __init__(self, args: argparse.Namespace, service_env: dict[str, str]) -> None:
        self.args = args
        self.sizes = Sizes.quick() if args.quick else Sizes.full()
        self.results: dict[str, Any] = {"phases": {}}
        self.cpu = CpuAccount()
        self.state = Path(tempfile.mkdtemp(prefix="f2pipe-bench-"))
        self.state.chmod(0o755)
        overrides: dict[str, dict[str, str]] = {}
        for item in args.function_env:
            function, _, assignment = item.partition(":")
            overrides.setdefault(function, {}).update(_pairs([assignment], "="))
        stack_dir = self.state / "stack"
        config = RuntimeConfig()
        config = config.model_copy(
            update={"inherited_env": {**config.inherited_env, **service_env}}
        )
        self.stack = BenchStack(
            state_dir=stack_dir,
            ports=StackPorts.free(),
            build_dir=stack_dir / "build",
            certs_dir=stack_dir / "certs",
            function_overrides=overrides,
            config=config,
        )

    def phase(self, name: str, work: Callable[[], T]) -> T:
        print(f"[bench] {name} ...", flush=True)
        start = self.cpu.snapshot()
        value = work()
        account = self.cpu.between(start, self.cpu.snapshot())
        self.results["phases"][name] = account
        print(
            f"[bench] {name} done in {account['wall_s']:.1f}s (cores: ours "
            f"{account['our_cores']}, others {account['foreign_cores']})",
            flush=True,
        )
        return value

    def scale(self, replicas: dict[str, str]) -> None:
        with self.stack.gateway_client(TimeoutConfig(connect_s=10.0, system_s=10.0)) as gateway:
            for function, count in replicas.items():
                gateway.scale(function, int(count))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready = {f.name: f.available_replicas for f in gateway.functions()}
                if all(ready.get(fn) == int(n) for fn, n in replicas.items()):
                    break
                time.sleep(1)
        # The connector sizes its concurrency from the listing it refreshes every 15 s.
        refresh = self.stack.config.inherited_env.get("CONNECTOR_REFRESH_SECONDS", "15")
        time.sleep(float(refresh) + 2)

    def execute(self) -> dict[str, Any]:
        args, sizes, results = self.args, self.sizes, self.results
        results.update(
            label=args.label,
            command="python -m infra.tools.bench " + shlex.join(sys.argv[1:]),
            mode="quick" if args.quick else "full",
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=machine_facts(),
            sizes=asdict(sizes),
            calibration_ms={"start": calibration_ms()},
        )
        started = time.monotonic()
        self.phase("stack up", self.stack.up)
        if args.replicas:
            self.phase("scale functions", lambda: self.scale(_pairs(args.replicas, "=")))
        stack = self.stack
        devices_dsn, ts_dsn = stack.dsn(DEVICES_DB), stack.dsn(TIMESERIES_DB)
        partitions = stack.config.kafka_partitions
        results["versions"] = versions(ts_dsn, stack.config.kafka_libs_dir)
        results["settings"] = settings(stack, partitions)
        devices = device_ids(sizes.devices)
        register_devices(devices_dsn, devices)
        fleet = Fleet(load_components(devices_dsn, [d for d, _ in devices]))
        sample_rows = raw.measurements_of(devices_dsn, fleet, sizes.copy_messages, seed=21)
        results["workload"] = {
            "devices": len(fleet.devices),
            "models": sorted({m for _, m in devices}),
            "rows_per_message": len(sample_rows) / sizes.copy_messages,
        }
        password = stack.secret("mqtt-monitor-password")
        cores = os.cpu_count() or 1
        raw_results: dict[str, Any] = {}
        results["raw"] = raw_results
        raw_results["mqtt"] = self.phase(
            "raw MQTT",
            lambda: raw.mqtt_raw(
                "127.0.0.1", stack.ports.mqtt, MONITOR_USER, password, fleet, sizes.raw_mqtt
            ),
        ).to_dict()
        raw_results["kafka"] = self.phase(
            "raw Kafka",
            lambda: raw.kafka_raw(stack.kafka_bootstrap, partitions, fleet, sizes.raw_kafka),
        ).to_dict()
        raw_results["copy"] = self.phase(
            "raw COPY", lambda: raw.copy_raw(ts_dsn, sample_rows)
        ).to_dict()
        batch = results["settings"]["connector"]["batch_max_records"]
        raw_results["sink_core"] = self.phase(
            "sink write path", lambda: raw.sink_core(ts_dsn, sample_rows, batch)
        ).to_dict()
        raw_results["decode_one_core"] = self.phase(
            "decode core x1", lambda: raw.decode_core(devices_dsn, fleet, sizes.decode, batch, 1)
        ).to_dict()
        raw_results["decode_all_cores"] = self.phase(
            f"decode core x{cores}",
            lambda: raw.decode_core(devices_dsn, fleet, sizes.decode, batch, cores),
        ).to_dict()
        raw_results["decode_handler_core"] = self.phase(
            "decode CPU path",
            lambda: raw.decode_handler_core(devices_dsn, fleet, sizes.decode, batch),
        ).to_dict()
        records = raw.connector_records(fleet, sizes.baseline, seed=31)
        results["baseline"] = self.phase(
            "per-message baseline", lambda: baseline.per_message(devices_dsn, ts_dsn, records)
        ).to_dict()

        pool = PublisherPool(2)
        pool.warm()
        pipe = pipeline.Pipeline(stack, fleet, pool)
        try:
            if "stages" not in args.skip:
                results["stages"] = asdict(
                    self.phase("stages alone", lambda: pipeline.stages_alone(pipe, sizes.stages))
                )
            results["sustained"] = asdict(
                self.phase(
                    "end to end, sustained", lambda: pipeline.sustained(pipe, sizes.sustained)
                )
            )
            half = results["sustained"]["msgs_per_s"] / 2
            if "latency" not in args.skip:
                results["latency"] = asdict(
                    self.phase(
                        "latency at half the sustained max",
                        lambda: pipeline.latency(pipe, half, sizes.latency_seconds),
                    )
                )
            p99 = (results.get("latency") or {}).get("latency", {}).get("p99", 1.0)
            drain = max(1.0, 1.5 * p99)
            if "burst" not in args.skip:
                results["burst"] = asdict(
                    self.phase(
                        "burst, memory",
                        lambda: pipeline.burst(
                            pipe, half, 10.0, sizes.burst_before_seconds, sizes.burst_seconds, drain
                        ),
                    )
                )
        finally:
            pipe.close()
            pool.close()
        results["calibration_ms"]["end"] = calibration_ms()
        results["ratios"] = compute_ratios(results)
        results["targets"] = targets(results)
        results["duration_s"] = round(time.monotonic() - started, 1)
        results["polluted"] = polluted(
            p for name, p in results["phases"].items() if name != "stack up"
        )
        return results

    def close(self) -> None:
        if self.args.keep:
            print(f"[bench] stack left running in {self.stack.state_dir}", flush=True)
            return
        self.stack.down()
        shutil.rmtree(self.state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    service_env = {} if args.autoscale else {"AUTOSCALER_DRY_RUN": "true"}  # fixed replicas
    service_env.update(_pairs(args.env, "="))
    run = Run(args, service_env)
    try:
        results = run.execute()
    finally:
        run.close()
    print()
    print(render_table(results))
    if results["polluted"]:
        print(
            "\nWARNING: other processes used more than "
            "0.25 core during a phase (see phases.*.foreign_cores); rerun on a quiet machine."
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
