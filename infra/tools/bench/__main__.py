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
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from f2lib.kafka import KAFKA_CLIENTS
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port
from infra.local.process import stop_pidfile
from infra.local.settings import RuntimeConfig
from infra.local.stack import (
    DEVICES_DB,
    TIMESERIES_DB,
    LocalStack,
    StackPorts,
)
from infra.services.kit.openfaas import TimeoutConfig
from infra.tools.bench import baseline, peer, pipeline, raw
from infra.tools.bench.machine import CpuAccount, calibration_ms, machine_facts, polluted, versions
from infra.tools.bench.processes import CpuByGroup, stack_groups
from infra.tools.bench.publisher import PublisherPool
from infra.tools.bench.report import compute_ratios, render_table, targets
from infra.tools.bench.settings import Sizes, settings
from infra.tools.bench.workload import Fleet, device_ids, load_components, register_devices

logger = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


BENCH_MQTT_USER = "f2-bench"
BENCH_PASSWORD_SECRET = "mqtt-bench-password"  # noqa: S105 (a secret's name)
# The raw and peer phases publish under bench/ (the bridge reads cmnd/# only; the stack's
# monitor user may write uplink topics only).
BENCH_TOPICS = (("readwrite", "bench/#"),)


@dataclass
class BenchStack(LocalStack):
    """A LocalStack whose functions get extra environment (``--function-env``), with an MQTT
    user of the bench's own for the ``bench/`` topics."""

    function_overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    def credentials(self) -> None:
        super().credentials()
        self._ensure_secret(BENCH_PASSWORD_SECRET, lambda: secrets.token_urlsafe(24))

    def mosquitto(self) -> MosquittoServer:
        server = super().mosquitto()
        server.add_user(BENCH_MQTT_USER, self.secret(BENCH_PASSWORD_SECRET), BENCH_TOPICS)
        return server

    def extra_bridges(self) -> list[str]:
        """The parts of the bridges added by ``add_bridge`` (``bridge-1``...)."""
        return sorted(p.stem for p in (self.state_dir / "pids").glob("bridge-*.pid"))

    def add_bridge(self) -> str:
        """One more bridge process on the shared subscription (its own client id and port)."""
        part = f"bridge-{len(self.extra_bridges()) + 1}"
        port = free_port()
        env = self._bridge_env()
        # A persistent session outlives its process, and Mosquitto goes on giving the stopped
        # member its share of the shared subscription: the added bridge's session ends 1 s
        # after it disconnects (the bench removes it only once the pipeline drained).
        env.update(
            BRIDGE_CLIENT_ID=f"f2-bridge-local-{part}",
            BRIDGE_HTTP_PORT=str(port),
            MQTT_SESSION_EXPIRY_SECONDS="1",
        )
        self._spawn(
            part,
            [sys.executable, "-m", "bridge"],
            env,
            ready_url=f"http://127.0.0.1:{port}/healthz",
        )
        return part

    def remove_bridges(self) -> None:
        parts = self.extra_bridges()
        for part in parts:
            stop_pidfile(self.pid_path(part), timeout=30)
            self.pid_path(part).unlink(missing_ok=True)
        if parts:
            time.sleep(2.0)  # their sessions expire (1 s) before the next phase publishes

    def down(self) -> list[str]:
        self.remove_bridges()
        return super().down()

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
        choices=["stages", "latency", "burst", "peer", "scaling", "cores"],
        help="leave a phase out",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a earlier run's JSON (e.g. of the code before a change): before/after targets",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured phases, a sustained run with py-spy on every Python process "
        "(flame graphs and collapsed stacks in bench-results/profiles/)",
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
        self.before: dict[str, Any] | None = (
            json.loads(args.before.read_text()) if args.before else None
        )
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
        by_group = CpuByGroup(self.stack.pid_path).start()
        value = work()
        account = self.cpu.between(start, self.cpu.snapshot())
        account["cpu_s_by_process"] = {
            k: round(v, 2) for k, v in by_group.stop().items() if v >= 0.01
        }
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
        self._raw(fleet, sample_rows)

        pool = PublisherPool(2)
        pool.warm()
        pipe = pipeline.Pipeline(stack, fleet, pool)
        try:
            self._pipeline(pipe, fleet)
        finally:
            pipe.close()
            pool.close()
        results["calibration_ms"]["end"] = calibration_ms()
        results["ratios"] = compute_ratios(results)
        results["targets"] = targets(results, self.before)
        results["duration_s"] = round(time.monotonic() - started, 1)
        results["polluted"] = polluted(
            p for name, p in results["phases"].items() if name != "stack up"
        )
        return results

    def _raw(self, fleet: Fleet, sample_rows: list[Any]) -> None:
        """The components alone: MQTT (paho, C clients), Kafka, COPY, the in-process cores."""
        args, sizes, stack = self.args, self.sizes, self.stack
        devices_dsn, ts_dsn = stack.dsn(DEVICES_DB), stack.dsn(TIMESERIES_DB)
        password = stack.secret(BENCH_PASSWORD_SECRET)
        raw_results: dict[str, Any] = {}
        self.results["raw"] = raw_results
        raw_results["mqtt"] = self.phase(
            "raw MQTT (paho)",
            lambda: raw.mqtt_raw(
                "127.0.0.1", stack.ports.mqtt, BENCH_MQTT_USER, password, fleet, sizes.raw_mqtt
            ),
        ).to_dict()
        raw_results["mqtt_c"] = self.phase(
            "raw MQTT (C clients)",
            lambda: peer.mosquitto_c_clients(
                host="127.0.0.1",
                port=stack.ports.mqtt,
                username=BENCH_MQTT_USER,
                password=password,
                fleet=fleet,
                count=sizes.raw_mqtt_c,
            ),
        )
        for client in KAFKA_CLIENTS:  # the two clients behind the seam, one after the other
            raw_results[f"kafka_{client}"] = self.phase(
                f"raw Kafka ({client})",
                lambda client=client: raw.kafka_raw(  # type: ignore[misc]
                    stack.kafka_bootstrap, stack.config.kafka_partitions, fleet,
                    sizes.raw_kafka, client,
                ),
            ).to_dict()  # fmt: skip
        raw_results["kafka"] = raw_results["kafka_kafka-python"]
        raw_results["copy"] = self.phase(
            "raw COPY", lambda: raw.copy_raw(ts_dsn, sample_rows)
        ).to_dict()
        batch = self.results["settings"]["connector"]["batch_max_records"]
        raw_results["sink_core"] = self.phase(
            "sink write path", lambda: raw.sink_core(ts_dsn, sample_rows, batch)
        ).to_dict()
        if "cores" in args.skip:
            return
        cores = os.cpu_count() or 1
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
        self.results["baseline"] = self.phase(
            "per-message baseline", lambda: baseline.per_message(devices_dsn, ts_dsn, records)
        ).to_dict()

    def _pipeline(self, pipe: pipeline.Pipeline, fleet: Fleet) -> None:
        args, sizes, results = self.args, self.sizes, self.results
        if "stages" not in args.skip:
            results["stages"] = asdict(
                self.phase("stages alone", lambda: pipeline.stages_alone(pipe, sizes.stages))
            )
        results["sustained"] = asdict(
            self.phase("end to end, sustained", lambda: pipeline.sustained(pipe, sizes.sustained))
        )
        # The pair measured by one method, one after the other: f2pipe's drain, Telegraf's.
        results["drain"] = asdict(
            self.phase("end to end, backlog drain", lambda: pipeline.drain(pipe, sizes.drain))
        )
        if "peer" not in args.skip:
            results["peer"] = self._peer(pipe, fleet)
        if "scaling" not in args.skip:
            results["scaling"] = self._scaling(pipe)
        half = results["sustained"]["msgs_per_s"] / 2
        if "latency" not in args.skip:
            results["latency"] = asdict(
                self.phase(
                    "latency at half the sustained max",
                    lambda: pipeline.latency(pipe, half, sizes.latency_seconds),
                )
            )
        if args.profile:
            folder = args.output.parent / "profiles"
            results["profiles"] = self.phase(
                "profiles",
                lambda: pipeline.profiled(
                    pipe, sizes.sustained, results["sustained"]["msgs_per_s"], folder
                ),
            )
        p99 = (results.get("latency") or {}).get("latency", {}).get("p99", 1.0)
        drain_below = max(1.0, 1.5 * p99)
        if "burst" not in args.skip:
            results["burst"] = asdict(
                self.phase(
                    "burst, memory",
                    lambda: pipeline.burst(
                        pipe, half, 10.0, sizes.burst_before_seconds, sizes.burst_seconds,
                        drain_below,
                    ),
                )
            )  # fmt: skip

    def _peer(self, pipe: pipeline.Pipeline, fleet: Fleet) -> dict[str, Any] | None:
        binary = self.stack.config.tools_dir / "bin" / "telegraf"
        if not binary.exists():
            print(f"[bench] no {binary} (make bench builds it): peer skipped", flush=True)
            return None
        stack = self.stack
        pg = stack.postgres()
        groups = stack_groups(stack.pid_path)
        brokers = {"mosquitto": groups["mosquitto"][0], "postgres": groups["postgres"][0]}
        password = stack.secret(BENCH_PASSWORD_SECRET)

        def publish(count: int, prefix: str) -> Any:
            plans = [
                replace(
                    pipe.plan(count // 2 + (count % 2 if i == 0 else 0), None, part, "peer"),
                    username=BENCH_MQTT_USER,
                    password=password,
                    topic_prefix=prefix,
                )
                for i, part in enumerate(fleet.split(2))
            ]
            return pipe.publish(plans)

        work = self.state / "telegraf"
        work.mkdir(exist_ok=True)
        figures = self.phase(
            "peer: telegraf, backlog drain",
            lambda: peer.telegraf_drain(
                binary,
                dsn=stack.dsn(TIMESERIES_DB),
                pg_password=pg.password,
                mqtt_port=stack.ports.mqtt,
                mqtt_user=BENCH_MQTT_USER,
                mqtt_password=password,
                publish=publish,
                broker_pids=brokers,
                count=self.sizes.drain,
                work_dir=work,
            ),
        )
        return asdict(figures)

    def _scaling(self, pipe: pipeline.Pipeline) -> list[dict[str, Any]]:
        """The drain with 1 and 2 replicas of decode and sink, and 1 and 2 bridges."""
        found: list[dict[str, Any]] = []
        for replicas, bridges in ((1, 1), (2, 1), (1, 2), (2, 2)):
            label = f"scaling: decode/sink x{replicas}, bridges x{bridges}"

            def one(replicas: int = replicas, bridges: int = bridges) -> dict[str, Any]:
                self.scale({"decode": str(replicas), "sink": str(replicas)})
                while len(self.stack.extra_bridges()) + 1 < bridges:
                    self.stack.add_bridge()
                if len(self.stack.extra_bridges()) + 1 > bridges:
                    self.stack.remove_bridges()
                figures = asdict(pipeline.drain(pipe, self.sizes.drain))
                figures["replicas"] = {"decode": replicas, "sink": replicas}
                return figures

            found.append(self.phase(label, one))
        self.stack.remove_bridges()
        self.scale({"decode": "1", "sink": "1"})
        return found

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
