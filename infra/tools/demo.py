"""`make run`: start the local stack, run a simulated fleet, and watch the pipeline live.

Once the devices listen, a few downlink commands (unlock a strike, sound a siren, light a
reader) go through the gateway's command function; the live view shows each and its answer.
Ctrl-C stops the simulation and leaves the stack running for exploration (`make down` stops it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg2
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from f2lib.contracts.commands import ACTIONS
from f2lib.contracts.devices import MODELS
from f2lib.contracts.functions import consumer_group
from f2lib.contracts.records import DEAD_LETTER_TOPIC, DECODED_TOPIC, RAW_TOPIC
from f2lib.kafka import kafka_admin_factory
from infra.local.stack import DEVICES_DB, TIMESERIES_DB, LocalStack
from infra.services.autoscaler.lag import KafkaLagReader
from infra.tools.command.client import CommandClient
from infra.tools.simulator.fleet import Fleet, FleetConfig, FleetSnapshot
from infra.tools.simulator.identity import parse_mix

logger = logging.getLogger(__name__)


@dataclass
class PipelineFigures:
    """One reading of the pipeline's counters."""

    at: float
    rows: int = 0
    rows_by_model: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    raw_records: int = 0


class PipelineWatch:
    """Reads rows stored, rows per model, dead letters, raw records and connector lag."""

    GROUPS = {consumer_group("decode"): [RAW_TOPIC], consumer_group("sink"): [DECODED_TOPIC]}

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        bootstrap = stack.kafka_bootstrap
        self.lag = KafkaLagReader(kafka_admin_factory(bootstrap, client_id="f2-run-watch"))
        self.offsets = KafkaConsumer(
            bootstrap_servers=bootstrap, client_id="f2-run-offsets", enable_auto_commit=False
        )
        self.partitions = {
            topic: [
                TopicPartition(topic, p)
                for p in sorted(self.offsets.partitions_for_topic(topic) or ())
            ]
            for topic in (RAW_TOPIC, DEAD_LETTER_TOPIC)
        }

    def _device_models(self) -> dict[str, str]:
        with (
            psycopg2.connect(self.stack.dsn(DEVICES_DB), connect_timeout=3) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT device_id, model FROM device")
            return dict(cur.fetchall())

    def read(self) -> PipelineFigures:
        """Lag first, rows after: rows counted once the lag reads zero include every record."""
        figures = PipelineFigures(at=time.monotonic())
        for group, lag in self.lag.read(self.GROUPS).items():
            figures.lag[self.GROUPS[group][0]] = lag.total
        models = self._device_models()
        with (
            psycopg2.connect(self.stack.dsn(TIMESERIES_DB), connect_timeout=3) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT device_id, count(*) FROM iot_measurements GROUP BY device_id")
            for device_id, count in cur.fetchall():
                figures.rows += count
                model = models.get(device_id, "?")
                figures.rows_by_model[model] = figures.rows_by_model.get(model, 0) + count
        ends = self.offsets.end_offsets([tp for tps in self.partitions.values() for tp in tps])
        figures.dead_letters = sum(ends[tp] for tp in self.partitions[DEAD_LETTER_TOPIC])
        figures.raw_records = sum(ends[tp] for tp in self.partitions[RAW_TOPIC])
        return figures

    def close(self) -> None:
        self.offsets.close()
        self.lag.close()


# What the demo asks of each commandable kind: (action, params).
DEMO_ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "strike": ("unlock", {"duration_s": 3}),
    "siren": ("on", {"duration_s": 3}),
    "reader": ("indicator", {"color": "green", "beep": True, "duration_s": 2}),
}


@dataclass
class CommandLine:
    """One command the demo sent, and its answer."""

    device_id: str
    target: str
    action: str
    status: str
    latency: str


class CommandDemo(threading.Thread):
    """Sends ``count`` commands, one every ``interval`` s, once every device listens."""

    def __init__(
        self,
        client: CommandClient,
        fleet: Fleet,
        state: dict[str, Any],
        stop: threading.Event,
        *,
        count: int,
        interval: float = 8.0,
    ) -> None:
        super().__init__(name="demo-commands", daemon=True)
        self.client, self.fleet, self.state, self.stop = client, fleet, state, stop
        self.count, self.interval = count, interval
        self.lines: list[CommandLine] = []

    def targets(self) -> list[tuple[str, str, str, str]]:
        """(device, connector, component, kind) of every commandable component, spread."""
        found = []
        for device_id, components in sorted(self.fleet.components.items()):
            for spec in components:
                if spec.component_type in ACTIONS and spec.component_type in DEMO_ACTIONS:
                    found.append((device_id, spec.connector, spec.component, spec.component_type))
        kinds: dict[str, list[tuple[str, str, str, str]]] = {}
        for target in found:
            kinds.setdefault(target[3], []).append(target)
        spread = []
        while any(kinds.values()):
            for kind in sorted(kinds):
                if kinds[kind]:
                    spread.append(kinds[kind].pop(0))
        return spread

    def run(self) -> None:
        while not self.stop.wait(1.0):
            snapshot: FleetSnapshot | None = self.state.get("snapshot")
            if snapshot is not None and snapshot.devices and snapshot.listening == snapshot.devices:
                break
        targets = self.targets()
        for device_id, connector, component, kind in targets[: self.count]:
            if self.stop.is_set():
                return
            action, params = DEMO_ACTIONS[kind]
            try:
                answer = self.client.send(device_id, connector, component, action, params, 5)
                status = answer.command_status or f"{answer.status} {answer.body.get('error')}"
                latency = answer.body.get("reply_latency_s")
                took = f"{latency * 1000:.0f} ms" if isinstance(latency, int | float) else "-"
            except Exception as exc:  # the live view shows what went wrong, the demo goes on
                status, took = f"error: {exc.__class__.__name__}", "-"
            self.lines.append(
                CommandLine(device_id, f"{connector}/{component}", action, status, took)
            )
            self.stop.wait(self.interval)


def render(
    snapshot: FleetSnapshot | None,
    figures: PipelineFigures | None,
    previous: PipelineFigures | None,
    started: float,
    commands: list[CommandLine] | None = None,
) -> Group:
    fleet = Table(title="simulated fleet", show_edge=False)
    for col in ("devices", "connected", "sent", "acked", "in flight", "publish rate"):
        fleet.add_column(col, justify="right")
    if snapshot is not None:
        rate = snapshot.acked / snapshot.elapsed if snapshot.elapsed > 0 else 0.0
        fleet.add_row(
            str(snapshot.devices),
            str(snapshot.connected),
            str(snapshot.sent),
            str(snapshot.acked),
            str(snapshot.outstanding),
            f"{rate:.1f}/s",
        )
    pipe = Table(title="pipeline", show_edge=False)
    for col in (
        "raw records",
        "rows stored",
        "rows/s",
        "dead letters",
        "lag raw_iot_data",
        "lag decoded_iot_data",
    ):
        pipe.add_column(col, justify="right")
    if figures is not None:
        rate = 0.0
        if previous is not None and figures.at > previous.at:
            rate = (figures.rows - previous.rows) / (figures.at - previous.at)
        pipe.add_row(
            str(figures.raw_records),
            str(figures.rows),
            f"{rate:.1f}",
            str(figures.dead_letters),
            str(figures.lag.get(RAW_TOPIC, 0)),
            str(figures.lag.get(DECODED_TOPIC, 0)),
        )
    models = Table(title="rows per model", show_edge=False)
    for model in MODELS:
        models.add_column(model, justify="right")
    if figures is not None:
        models.add_row(*(str(figures.rows_by_model.get(m, 0)) for m in MODELS))
    downlink = Table(title="downlink commands (POST /function/command)", show_edge=False)
    for col in ("device", "component", "action", "answer", "reply"):
        downlink.add_column(col)
    for line in (commands or [])[-6:]:
        downlink.add_row(line.device_id, line.target, line.action, line.status, line.latency)
    return Group(
        f"[bold]f2pipe[/] running for {time.monotonic() - started:.0f}s "
        "(Ctrl-C stops the simulation; the stack keeps running)",
        fleet,
        pipe,
        models,
        downlink,
    )


def show_examples(stack: LocalStack, console: Console) -> None:
    with psycopg2.connect(stack.dsn(TIMESERIES_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT to_char(time, 'HH24:MI:SS.MS'), device_id, connector,"
            " component_type || coalesce('/' || nullif(component_id, ''), ''),"
            " round(value::numeric, 2), value_text, unit"
            " FROM iot_measurements ORDER BY time DESC LIMIT 8"
        )
        latest = Table(title="latest rows in iot_measurements")
        for col in ("time (UTC)", "device", "conn", "component", "value", "text", "unit"):
            latest.add_column(col, overflow="fold")
        for row in cur.fetchall():
            latest.add_row(*("" if v is None else str(v) for v in row))
        console.print(latest)
        cur.execute(
            "SELECT bucket, component_type, unit, sum(samples), round(avg(value_avg)::numeric, 3)"
            " FROM iot_measurements_hourly GROUP BY bucket, component_type, unit"
            " ORDER BY bucket DESC, component_type LIMIT 12"
        )
        hourly = Table(title="hourly aggregate (iot_measurements_hourly)")
        for col in ("bucket", "component", "unit", "samples", "avg value"):
            hourly.add_column(col)
        for row in cur.fetchall():
            hourly.add_row(*("" if v is None else str(v) for v in row))
        console.print(hourly)
    console.print(
        'Explore: [bold]eval "$(make -s env)"[/], then [bold]make db-timescale[/], '
        "[bold]make kafka-decoded[/], [bold]make mqtt-monitor[/]; "
        "[bold]make down[/] stops the stack."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tools.demo", description=__doc__)
    parser.add_argument("--per-model", type=int, default=2, help="devices per model (default 2)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per device")
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds to simulate (0: until Ctrl-C; default 60)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-live", action="store_true", help="plain progress lines")
    parser.add_argument(
        "--commands", type=int, default=5, help="downlink commands to send (0: none; default 5)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    stack = LocalStack.load()
    console.print("[bold]starting the local stack[/]")
    stack.up()
    env = stack.env()
    config = FleetConfig(
        mix=parse_mix(",".join(f"{m}:{args.per_model}" for m in MODELS), None),
        seed=args.seed,
        rate=args.rate,
        gateway_url=env["GATEWAY_URL"],
        provision_token=SecretStr(env["PROVISION_TOKEN"]),
        mqtt_host=env["MQTT_HOST"],
        mqtt_port=int(env["MQTT_TLS_PORT"]),
        ca_cert=Path(env["CA_CERT"]),
        devices_dsn=SecretStr(env["DEVICES_DSN"]),
        cert_dir=stack.certs_dir / "devices",
        record_acks=False,
    )
    fleet = Fleet(config)
    console.print(
        f"[bold]provisioning {len(fleet.identities)} devices[/] through "
        f"{env['GATEWAY_URL']}/function/provision (CSR, mTLS certificates)"
    )
    creds = fleet.provision_all()
    console.print(f"{len(creds)} devices have certificates in {config.cert_dir}")

    stop = threading.Event()
    state: dict[str, Any] = {"snapshot": None}

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    watch = PipelineWatch(stack)
    started = time.monotonic()
    result: dict[str, Any] = {}

    def simulate() -> None:
        try:
            result["report"] = fleet.run(
                duration=args.duration or None,
                stop=stop,
                on_tick=lambda snap: state.__setitem__("snapshot", snap),
            )
        except Exception as exc:
            result["error"] = exc
            stop.set()

    runner = threading.Thread(target=simulate, name="fleet", daemon=True)
    runner.start()
    commander = CommandDemo(
        CommandClient(env["GATEWAY_URL"], SecretStr(env["COMMAND_TOKEN"])),
        fleet,
        state,
        stop,
        count=args.commands,
    )
    if args.commands > 0:
        commander.start()
    previous: PipelineFigures | None = None
    figures: PipelineFigures | None = None
    settle_until: float | None = None
    with Live(
        console=console, refresh_per_second=2, transient=False, auto_refresh=not args.no_live
    ) as live:
        while True:
            previous, figures = figures, watch.read()
            view = render(state["snapshot"], figures, previous, started, commander.lines)
            if args.no_live:
                console.print(view)
            else:
                live.update(view)
            if not runner.is_alive():
                # Let the pipeline drain what the fleet sent, then stop watching.
                settle_until = settle_until or time.monotonic() + 30
                # Drained: no lag on either topic, and no new raw record since the last look
                # (the bridge may still hold the fleet's last messages).
                drained = (
                    figures.lag.get(RAW_TOPIC, 0) == 0
                    and figures.lag.get(DECODED_TOPIC, 0) == 0
                    and previous is not None
                    and previous.raw_records == figures.raw_records
                )
                if drained or time.monotonic() > settle_until:
                    break
            time.sleep(1.0 if not args.no_live else 5.0)
    watch.close()
    if "error" in result:
        console.print(f"[red]simulation failed:[/] {result['error']}")
        return 1
    report = result.get("report")
    if report is not None:
        console.print(
            f"fleet: {report.total('acked')} of {report.total('sent')} messages "
            f"acknowledged by the broker in {report.duration_s:.1f}s"
        )
    if commander.lines:
        answered = sum(line.status in ("ok", "rejected", "expired") for line in commander.lines)
        console.print(f"commands: {answered} of {len(commander.lines)} answered by their device")
    if figures is not None:
        missing = [m for m in MODELS if not figures.rows_by_model.get(m)]
        console.print(
            f"pipeline: {figures.rows} rows stored, {figures.dead_letters} dead "
            f"letters; models without rows: {missing or 'none'}"
        )
    show_examples(stack, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
