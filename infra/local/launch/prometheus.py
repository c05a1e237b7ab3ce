"""Prometheus for the local stack: render the config, start Debian's binary, list its targets.

``python -m infra.local.launch.prometheus render|check|targets`` for scripts; the stack
orchestrator uses :class:`PrometheusServer` (start, ready, stop) with the stack's ports.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import requests

from f2lib.errors import MonitoringError, ProcessError
from infra.local.ports import port_open
from infra.local.process import ManagedProcess

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parents[1] / "monitoring"
CONFIG_TEMPLATE = HERE / "prometheus.yml.template"
RULES_FILE = HERE / "rules.yml"
PROMETHEUS_BIN = "/usr/bin/prometheus"
PROMTOOL_BIN = "/usr/bin/promtool"


@dataclass(frozen=True, slots=True)
class ScrapePorts:
    """Loopback ports of every part Prometheus scrapes, and the function target file."""

    prometheus: int
    gateway: int
    bridge: int
    connector: int
    autoscaler: int
    function_targets_file: Path
    host: str = "127.0.0.1"


def render_config(
    ports: ScrapePorts, *, scrape_interval_s: int = 5, rules_file: Path = RULES_FILE
) -> str:
    """The Prometheus config for ``ports`` from ``prometheus.yml.template``."""
    return Template(CONFIG_TEMPLATE.read_text()).substitute(
        scrape_interval=f"{scrape_interval_s}s",
        scrape_timeout=f"{max(1, scrape_interval_s - 1)}s",
        rules_file=str(rules_file),
        host=ports.host,
        prometheus_port=ports.prometheus,
        gateway_port=ports.gateway,
        bridge_port=ports.bridge,
        connector_port=ports.connector,
        autoscaler_port=ports.autoscaler,
        function_targets_file=str(ports.function_targets_file),
    )


def check_config(config_file: Path, promtool: str = PROMTOOL_BIN) -> str:
    """``promtool check config``; raises ProcessError with its output when it fails."""
    tool = shutil.which(promtool) or promtool
    result = subprocess.run(
        [tool, "check", "config", str(config_file)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProcessError(f"promtool rejected {config_file}:\n{result.stdout}{result.stderr}")
    return result.stdout


class PrometheusServer:
    """One Prometheus process with its config and data under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        ports: ScrapePorts,
        *,
        binary: str = PROMETHEUS_BIN,
        retention: str = "2d",
        scrape_interval_s: int = 5,
    ) -> None:
        self.state_dir = state_dir
        self.ports = ports
        self.binary = binary
        self.retention = retention
        self.scrape_interval_s = scrape_interval_s
        self.process: ManagedProcess | None = None

    @property
    def config_file(self) -> Path:
        return self.state_dir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.ports.host}:{self.ports.prometheus}"

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        targets = self.ports.function_targets_file
        if not targets.exists():
            targets.parent.mkdir(parents=True, exist_ok=True)
            targets.write_text("[]\n")
        self.config_file.write_text(
            render_config(self.ports, scrape_interval_s=self.scrape_interval_s)
        )
        return self.config_file

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={self.ports.host}:{self.ports.prometheus}",
            "--web.enable-lifecycle",
        ]

    def start(self, *, pid_path: Path | None = None, timeout: float = 60.0) -> PrometheusServer:
        if not Path(self.binary).exists() and shutil.which(self.binary) is None:
            raise ProcessError(f"{self.binary} not found; install Debian's prometheus package")
        self.write_config()
        self.process = ManagedProcess(
            "prometheus",
            self.argv(),
            self.state_dir / "prometheus.log",
            cwd=self.state_dir,
            pid_path=pid_path,
        ).start()
        self.process.wait_ready(self.ready, timeout=timeout)
        logger.info("prometheus ready on %s", self.url)
        return self

    def ready(self) -> bool:
        if not port_open(self.ports.prometheus, self.ports.host):
            return False
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def targets(self) -> list[dict[str, Any]]:
        """Active targets: job, instance, health (up/down/unknown), last error."""
        return active_targets(self.url)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


def active_targets(url: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=5)
    resp.raise_for_status()
    found = []
    for target in resp.json()["data"]["activeTargets"]:
        labels = target.get("labels", {})
        found.append(
            {
                "job": labels.get("job"),
                "instance": labels.get("instance"),
                "function": labels.get("function"),
                "health": target.get("health"),
                "last_error": target.get("lastError", ""),
            }
        )
    return found


def summarize_targets(url: str) -> str:
    """``7/7 targets up``, or MonitoringError naming the targets that are down."""
    try:
        rows = active_targets(url)
    except (requests.RequestException, KeyError, ValueError) as exc:
        raise MonitoringError(f"no answer from {url}: {type(exc).__name__}") from exc
    down = [f"{r['job']} {r['instance']}" for r in rows if r["health"] == "down"]
    if not rows:
        raise MonitoringError("no targets yet")
    if down:
        raise MonitoringError(f"{len(down)}/{len(rows)} targets down: {', '.join(down)}")
    up = sum(1 for r in rows if r["health"] == "up")
    replicas = sum(1 for r in rows if r["job"] == "functions")
    pending = f", {len(rows) - up} not scraped yet" if up < len(rows) else ""
    return f"{url}: {up}/{len(rows)} targets up ({replicas} function replicas{pending})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print the config for the given ports")
    for name in ("prometheus", "gateway", "bridge", "connector", "autoscaler"):
        render.add_argument(f"--{name}-port", type=int, required=True)
    render.add_argument("--function-targets", type=Path, required=True)
    check = sub.add_parser("check", help="promtool check config FILE")
    check.add_argument("config", type=Path)
    targets = sub.add_parser("targets", help="print a Prometheus' active targets, one per line")
    targets.add_argument("--url", default="http://127.0.0.1:9090")
    args = parser.parse_args(argv)
    if args.command == "render":
        ports = ScrapePorts(
            args.prometheus_port,
            args.gateway_port,
            args.bridge_port,
            args.connector_port,
            args.autoscaler_port,
            args.function_targets.resolve(),
        )
        print(render_config(ports), end="")
    elif args.command == "check":
        print(check_config(args.config), end="")
    else:
        rows = active_targets(args.url)
        for row in rows:
            print(json.dumps(row))
        return 0 if rows and all(r["health"] == "up" for r in rows) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
