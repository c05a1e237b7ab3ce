"""``python -m infra.tools.chaos`` (``make chaos``): the fault matrix, on a stack of its own.

For each scenario: fresh devices are registered, a QoS 1 workload is published at a fixed
rate (a spawned process, counting which messages the broker acknowledged), the scenario's
faults are done during it (SIGKILL, or SIGSTOP then SIGCONT), the runtime's watchdog starts
killed parts again, and once every acknowledged message's rows are stored (or the drain
timeout passed) the scenario's verdict is read from PostgreSQL and Kafka. Loopback only; not
part of ``make test``. See docs/reliability.md for the method and the last run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path

import psycopg2
from kafka.errors import KafkaError

from f2lib.contracts.records import DEAD_LETTER_TOPIC, RAW_TOPIC
from f2lib.errors import ChaosError, F2PipeError
from infra.local.settings import RuntimeConfig
from infra.local.stack import DEVICES_DB, MONITOR_USER, TIMESERIES_DB, LocalStack, StackPorts
from infra.local.watchdog import restarts
from infra.tools.chaos.faults import Applied, FaultInjector
from infra.tools.chaos.ledger import StoredRows, Workload, end_offsets, judge, prepare, read_since
from infra.tools.chaos.publisher import PublisherProcess, PublishOutcome, PublishPlan
from infra.tools.chaos.report import ScenarioResult, markdown_table, text_table, write_into
from infra.tools.chaos.scenarios import Scenario, matrix, select

logger = logging.getLogger("chaos")
ROOT = Path(__file__).resolve().parents[3]
HEALTHY_TIMEOUT_S = 300.0
SETTLE_S = 120.0  # no new message stored for this long: the drain is over
POLL_S = 0.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.chaos", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="per scenario")
    parser.add_argument("--rate", type=float, default=400.0, help="messages per second")
    parser.add_argument("--devices", type=int, default=140, help="per scenario")
    parser.add_argument(
        "--scenario", action="append", default=[], help="run those whose name contains this"
    )
    parser.add_argument("--drain-timeout", type=float, default=420.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--output", type=Path, default=ROOT / "chaos-results" / "latest.json")
    parser.add_argument(
        "--write-doc", action="store_true", help="put the table into docs/reliability.md"
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=ROOT / "chaos-results" / "logs",
        help="where every part's log is copied before a stack is stopped",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--keep", action="store_true", help="leave the last stack running")
    return parser.parse_args(argv)


def make_stack(root: Path, brokers: int) -> LocalStack:
    """A stack of the harness's own: free ports, a temporary folder, the watchdog looking
    every second, fixed replicas (the autoscaler in dry run)."""
    config = RuntimeConfig()
    config = config.model_copy(
        update={
            "kafka_brokers": brokers,
            "watchdog": True,
            "watchdog_interval_s": 1.0,
            "inherited_env": {**config.inherited_env, "AUTOSCALER_DRY_RUN": "true"},
        }
    )
    state = root / f"stack-{brokers}"
    return LocalStack(
        state_dir=state,
        ports=StackPorts.free(),
        build_dir=state / "build",
        certs_dir=state / "certs",
        config=config,
    )


def keep_logs(stack: LocalStack, target: Path) -> None:
    """Copy every part's log (the watchdog's, the functions') out of the stack's folder."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    logs = [*stack.logs_dir.glob("*.log"), *(stack.state_dir / "gateway" / "logs").glob("*.log")]
    logs += [stack.log_path(part) for part in ("kafka", "kafka-2", "kafka-3", "postgres",
                                                "mosquitto")]  # fmt: skip
    for log in logs:
        if log.is_file():
            shutil.copy(log, target / f"{log.parent.name}-{log.name}")


def wait_healthy(stack: LocalStack, timeout: float = HEALTHY_TIMEOUT_S) -> float:
    """Seconds until every part of ``stack`` answers its health check."""
    started = time.monotonic()
    failing: list[str] = []
    while time.monotonic() - started < timeout:
        failing = [f"{part}: {detail}" for part, ok, detail in stack.status() if not ok]
        if not failing:
            return time.monotonic() - started
        time.sleep(3)
    raise ChaosError(f"the stack is not healthy after {timeout:.0f}s: {'; '.join(failing)}")


class Harness:
    """Runs scenarios on one stack."""

    def __init__(self, args: argparse.Namespace, stack: LocalStack) -> None:
        self.args = args
        self.stack = stack
        self.injector = FaultInjector(stack)
        self.publisher = PublisherProcess()

    def close(self) -> None:
        self.publisher.close()

    def run(self, index: int, scenario: Scenario) -> ScenarioResult:
        result = ScenarioResult(scenario.name, scenario.brokers,
                                [f.describe() for f in scenario.faults], scenario.note)  # fmt: skip
        started = time.monotonic()
        try:
            self._run(index, scenario, result)
        except (F2PipeError, OSError, TimeoutError, psycopg2.Error, KafkaError) as exc:
            logger.exception("scenario %s failed", scenario.name)
            result.error = f"{type(exc).__name__}: {exc}"
        result.duration_s = round(time.monotonic() - started, 1)
        return result

    def _run(self, index: int, scenario: Scenario, result: ScenarioResult) -> None:
        stack, args = self.stack, self.args
        wait_healthy(stack)
        workload = prepare(stack.dsn(DEVICES_DB), index, args.devices, args.messages, args.seed)
        bootstrap = stack.kafka_bootstrap
        raw_start = end_offsets(bootstrap, RAW_TOPIC)
        letters_start = end_offsets(bootstrap, DEAD_LETTER_TOPIC)
        before = dict(restarts(stack.state_dir))
        targets = [self.injector.pid_path(f.part) for f in scenario.faults]  # before traffic
        plan = PublishPlan(
            host="127.0.0.1",
            port=stack.ports.mqtt,
            username=MONITOR_USER,
            password=stack.secret("mqtt-monitor-password"),
            client_id=f"chaos-publisher-{index}",
            messages=workload.wire(),
            rate=args.rate,
            start_at=time.time() + 2.0,
        )
        print(f"[chaos] {scenario.name}: {len(workload.messages):,} messages at "
              f"{args.rate:.0f}/s, faults: {', '.join(result.faults) or 'none'}",
              flush=True)  # fmt: skip
        future = self.publisher.submit(plan)
        applied = self._faults(scenario, targets, plan.start_at, future)
        outcome = future.result()
        result.publisher_disconnects = outcome.disconnects
        self._drain(workload, outcome, applied)
        self._wait_back(applied)
        result.back_s = [None if a.back_at is None else round(a.back_at - a.done_at, 1)
                         for a in applied]  # fmt: skip
        result.healthy_after_s = round(wait_healthy(stack), 1)
        after = restarts(stack.state_dir)
        result.restarted = {
            p: n - before.get(p, 0) for p, n in after.items() if n > before.get(p, 0)
        }
        result.verdict = judge(
            workload,
            outcome,
            StoredRows.read(stack.dsn(TIMESERIES_DB), workload.devices),
            read_since(bootstrap, RAW_TOPIC, raw_start),
            read_since(bootstrap, DEAD_LETTER_TOPIC, letters_start),
        )
        restarted = ", ".join(f"{p} {n}x" for p, n in sorted(result.restarted.items()))
        print("[chaos]   " + " | ".join(result.row()[1:]) + f" (restarted: {restarted or '-'})",
              flush=True)  # fmt: skip

    def _faults(
        self, scenario: Scenario, targets: Sequence[Path], start_at: float,
        publishing: Future[PublishOutcome],
    ) -> list[Applied]:  # fmt: skip
        """Do each fault at its time, continue the paused ones after their pause, and note
        when each part was back, until the publishing is over."""
        pending = sorted(zip(scenario.faults, targets, strict=True), key=lambda ft: ft[0].at_s)
        applied: list[Applied] = []
        resumes: list[tuple[float, Applied]] = []
        while pending or resumes or not publishing.done():
            now = time.time()
            while pending and now >= start_at + pending[0][0].at_s:
                fault, target = pending.pop(0)
                done = self.injector.apply(fault, target)
                applied.append(done)
                if fault.action == "pause":
                    resumes.append((now + fault.pause_s, done))
            for due in [r for r in resumes if now >= r[0]]:
                resumes.remove(due)
                self.injector.resume(due[1])
            for done in applied:
                self.injector.check_back(done)
            time.sleep(POLL_S)
        return applied

    def _wait_back(self, applied: Sequence[Applied], timeout: float = HEALTHY_TIMEOUT_S) -> None:
        """Until every faulted part runs again (the watchdog starts a killed one)."""
        deadline = time.monotonic() + timeout
        while not all(self.injector.check_back(done) for done in applied):
            if time.monotonic() > deadline:
                missing = [d.fault.part for d in applied if d.back_at is None]
                raise ChaosError(f"not running again after {timeout:.0f}s: {missing}")
            time.sleep(POLL_S)

    def _drain(
        self, workload: Workload, outcome: PublishOutcome, applied: Sequence[Applied]
    ) -> StoredRows:
        """Wait until every acknowledged message is stored, nothing more comes for SETTLE_S,
        or the drain timeout passed."""
        dsn = self.stack.dsn(TIMESERIES_DB)
        deadline = time.monotonic() + self.args.drain_timeout
        best, progressed = -1, time.monotonic()
        while True:
            for done in applied:
                self.injector.check_back(done)
            try:
                rows = StoredRows.read(dsn, workload.devices)
            except psycopg2.Error as exc:  # PostgreSQL is down, on purpose, for a while
                if time.monotonic() > deadline:
                    raise ChaosError(f"PostgreSQL not back within the drain: {exc}") from exc
                logger.info("rows not readable yet: %s", str(exc).splitlines()[0])
                time.sleep(2.0)
                continue
            verdict = judge(workload, outcome, rows)
            if verdict.lost == 0:
                return rows
            if verdict.stored > best:
                best, progressed = verdict.stored, time.monotonic()
            if time.monotonic() - progressed > SETTLE_S or time.monotonic() > deadline:
                print(f"[chaos]   {verdict.lost} acknowledged messages not stored; giving up "
                      "the drain", flush=True)  # fmt: skip
                return rows
            time.sleep(2.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("infra.tools.chaos").setLevel(logging.INFO)
    # the harness's own Kafka clients complain while a broker is down on purpose
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    scenarios = select(matrix(), args.scenario)
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.name}  ({scenario.brokers} broker(s))")
        return 0
    root = Path(tempfile.mkdtemp(prefix="f2pipe-chaos-"))
    root.chmod(0o755)
    results: list[ScenarioResult] = []
    started = time.monotonic()
    stack: LocalStack | None = None
    try:
        for brokers in sorted({s.brokers for s in scenarios}):
            stack = make_stack(root, brokers)
            print(f"[chaos] starting a stack with {brokers} Kafka broker(s) in {stack.state_dir}",
                  flush=True)  # fmt: skip
            stack.up()
            harness = Harness(args, stack)
            try:
                for index, scenario in enumerate(scenarios):
                    if scenario.brokers == brokers:
                        results.append(harness.run(index, scenario))
            finally:
                harness.close()
                keep_logs(stack, args.logs / f"stack-{brokers}")
                if not args.keep or brokers != max(s.brokers for s in scenarios):
                    stack.down()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(text_table(results))
    total = time.monotonic() - started
    print(f"\n{len(results)} scenarios in {total / 60:.1f} min")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "duration_s": round(total, 1),
             "results": [asdict(r) for r in results]},
            indent=2,
            default=str,
        )
        + "\n"
    )  # fmt: skip
    print(f"written {args.output}")
    if args.write_doc:
        write_into(ROOT / "docs" / "reliability.md", markdown_table(results))
        print("table written into docs/reliability.md")
    return 0 if all(r.error is None and r.verdict and r.verdict.lost == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
