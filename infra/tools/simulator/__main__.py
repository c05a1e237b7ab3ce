"""`python -m infra.tools.simulator`: provision and run a fleet of simulated F2 controllers.

Endpoints default to the variables ``make -s env`` prints (GATEWAY_URL, MQTT_HOST,
MQTT_TLS_PORT, CA_CERT, and F2_SECRETS_DIR whose files ``provision-token`` and ``devices-dsn``
are the secrets), else to the local stack's state folder. Secrets are never read from
environment variables or the command line: ``--token-file`` and ``--devices-dsn-file`` name files.
Exit status: 0 when every message sent was acknowledged, 1 when provisioning, connecting or
the configuration failed, 3 when messages stayed unacknowledged or were refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from f2lib.contracts.devices import MODELS
from f2lib.errors import ConfigError, SimulatorError
from f2lib.secrets import read_secret_file
from infra.tools.simulator.fleet import DEFAULT_CERT_DIR, Fleet, FleetConfig, FleetReport
from infra.tools.simulator.identity import parse_mix
from infra.tools.simulator.progress import LiveProgress, QuietProgress, render_summary
from infra.tools.simulator.settings import (
    Endpoints,
    SimulatorEnvConfig,
    from_environment,
    from_local_stack,
)

logger = logging.getLogger("infra.tools.simulator")

EXIT_FAILED = 1
EXIT_UNACKED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.tools.simulator",
        description="Simulated F2 controllers: provision with a CSR, publish over MQTT/mTLS.",
    )
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--devices", type=int, help="number of devices (default: one per model)")
    fleet.add_argument(
        "--models",
        default="all",
        help=f"'all', a list ({MODELS[0]},{MODELS[5]}) spread over --devices, "
        f"or counts ({MODELS[0]}:2,{MODELS[5]}:1); default all",
    )
    fleet.add_argument(
        "--rate", type=float, default=1.0, help="messages per second per device (default 1)"
    )
    stop = fleet.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds to publish (default: until Ctrl-C)")
    stop.add_argument("--messages", type=int, help="messages per device, then stop")
    fleet.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (default 1)")
    fleet.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of MACs and traffic; the same seed is the same fleet (default 1)",
    )
    ends = parser.add_argument_group("endpoints (default: the environment of `make -s env`)")
    ends.add_argument("--gateway", help="gateway URL ($GATEWAY_URL)")
    ends.add_argument(
        "--token-file",
        type=Path,
        help="file of the provisioning bearer token ($F2_SECRETS_DIR/provision-token)",
    )
    ends.add_argument("--mqtt-host", help="broker host ($MQTT_HOST)")
    ends.add_argument("--mqtt-port", type=int, help="broker mTLS port ($MQTT_TLS_PORT)")
    ends.add_argument("--ca", type=Path, help="CA certificate ($CA_CERT)")
    ends.add_argument(
        "--devices-dsn-file",
        type=Path,
        help="file of the device-management DSN ($F2_SECRETS_DIR/devices-dsn)",
    )
    ends.add_argument(
        "--cert-dir",
        type=Path,
        default=DEFAULT_CERT_DIR,
        help="where each device keeps its key and certificate (default certs/devices/)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--catalogue",
        choices=("database", "builtin"),
        default="database",
        help="components from device_parameters (default) or the built-in copy "
        "of the templates (dry runs and tests only)",
    )
    run.add_argument(
        "--reprovision",
        action="store_true",
        help="issue new certificates even when stored ones are valid",
    )
    run.add_argument("--provision-only", action="store_true", help="provision the fleet and exit")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the messages the fleet would send (no network; built-in "
        "catalogue); --messages per device, default 3",
    )
    run.add_argument("--no-progress", action="store_true", help="plain log lines, no live panel")
    run.add_argument(
        "--report",
        type=Path,
        help="write a JSON report (per-device counts and "
        "every acknowledged message's topic, timestamp)",
    )
    run.add_argument(
        "--devices-per-thread",
        type=int,
        default=200,
        help="devices multiplexed by one network thread (default 200)",
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for outstanding acknowledgements at the end",
    )
    run.add_argument("--log-level", default=os.getenv("LOG_LEVEL", "WARNING"))
    return parser


def _endpoints(args: argparse.Namespace) -> Endpoints:
    env = SimulatorEnvConfig()
    endpoints = from_environment(env)
    if endpoints.gateway_url is None and endpoints.provision_token is None:
        endpoints = from_local_stack(env.f2_state_dir) or endpoints
    try:
        token = read_secret_file(args.token_file) if args.token_file else None
        dsn = read_secret_file(args.devices_dsn_file) if args.devices_dsn_file else None
    except ConfigError as exc:
        raise SimulatorError(str(exc)) from exc
    return endpoints.model_copy(
        update={
            k: v
            for k, v in {
                "gateway_url": args.gateway,
                "provision_token": token,
                "mqtt_host": args.mqtt_host,
                "mqtt_tls_port": args.mqtt_port,
                "ca_cert": args.ca,
                "devices_dsn": dsn,
            }.items()
            if v is not None
        }
    )


def _config(args: argparse.Namespace, env: Endpoints) -> FleetConfig:
    return FleetConfig(
        mix=parse_mix(args.models, args.devices),
        seed=args.seed,
        rate=args.rate,
        qos=args.qos,
        cert_dir=args.cert_dir,
        gateway_url=env.gateway_url,
        provision_token=env.provision_token,
        mqtt_host=env.mqtt_host,
        mqtt_port=env.mqtt_tls_port,
        ca_cert=env.ca_cert,
        devices_dsn=env.devices_dsn,
        catalogue="builtin" if args.dry_run else args.catalogue,
        devices_per_thread=args.devices_per_thread,
        drain_timeout=args.drain_timeout,
        record_acks=args.report is not None,
    )


def _dry_run(fleet: Fleet, messages: int) -> int:
    fleet.load_components()
    for device_id, stream in fleet.streams().items():
        for _ in range(messages):
            message = stream.next_message()
            print(
                json.dumps(
                    {
                        "device_id": device_id,
                        "topic": message.topic,
                        "payload": message.payload.decode(),
                    }
                )
            )
    return 0


def _stop_on_interrupt(stop: threading.Event, console: Console) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        console.print("stopping: waiting for outstanding acknowledgements (Ctrl-C again to quit)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace, console: Console) -> int:
    endpoints = from_environment(SimulatorEnvConfig()) if args.dry_run else _endpoints(args)
    config = _config(args, endpoints)
    fleet = Fleet(config)
    if args.dry_run:
        return _dry_run(fleet, args.messages or 3)
    console.print(
        f"provisioning {len(fleet.identities)} devices "
        f"({', '.join(f'{m}x{n}' for m, n in config.mix.items())}), seed {config.seed}"
    )
    credentials = fleet.provision_all(force=args.reprovision)
    fresh = sum(c.provisioned for c in credentials)
    console.print(
        f"certificates: {fresh} issued now, {len(credentials) - fresh} reused "
        f"(in {config.cert_dir})"
    )
    if args.provision_only:
        return 0
    fleet.load_components()
    stop = threading.Event()
    _stop_on_interrupt(stop, console)
    target = (
        f"{args.duration:g}s"
        if args.duration is not None
        else f"{args.messages} messages per device"
        if args.messages is not None
        else "until Ctrl-C"
    )
    console.print(
        f"publishing to {config.mqtt_host}:{config.mqtt_port} at {config.rate:g} "
        f"msg/s per device, QoS {config.qos}, {target}"
    )
    report: FleetReport
    if args.no_progress:
        report = fleet.run(
            duration=args.duration,
            messages=args.messages,
            stop=stop,
            on_tick=QuietProgress(console),
        )
    else:
        with LiveProgress(console) as progress:
            report = fleet.run(
                duration=args.duration, messages=args.messages, stop=stop, on_tick=progress
            )
    console.print()
    console.print(render_summary(report))
    if args.report is not None:
        report.write(args.report)
        console.print(f"report written to {args.report}")
    if not report.complete:
        totals = report.to_dict()["totals"]
        console.print(
            f"[bold red]{totals['unacknowledged']} messages unacknowledged, "
            f"{totals['rejected'] + totals['dropped']} refused or dropped[/]"
        )
        return EXIT_UNACKED
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    console = Console(stderr=args.dry_run)
    try:
        return run(args, console)
    except SimulatorError as exc:
        console.print(f"[bold red]simulator: {escape(str(exc))}[/]", highlight=False)
        return EXIT_FAILED
    except ValidationError as exc:
        console.print(
            f"[bold red]simulator: invalid settings: {escape(str(exc))}[/]", highlight=False
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
