"""`python -m infra.local` (make up/status/env/down) on a private state folder and free ports."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local.ports import free_port
from infra.local.stack import StackPorts
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.local", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _processes_under(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(path) in cmdline or str(path).encode() in environ:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture(scope="module")
def cli_env(runtime_root: Path) -> Iterator[dict[str, str]]:
    state = runtime_root / "stack-cli"
    env = dict(
        os.environ,
        F2_STATE_DIR=str(state),
        F2_CERTS_DIR=str(state / "certs"),
        F2_BUILD_DIR=str(state / "build"),
    )
    for name in vars(StackPorts()):
        env[f"F2_PORT_{name.upper()}"] = str(free_port())
    yield env
    _run(env, "down")


def test_up_status_env_down_leaves_no_process(cli_env: dict[str, str]) -> None:
    state = Path(cli_env["F2_STATE_DIR"])
    started = time.monotonic()
    up = _run(cli_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    status = _run(cli_env, "status")
    elapsed = time.monotonic() - started
    assert status.returncode == 0, status.stdout + status.stderr
    assert elapsed < 120, f"up + status took {elapsed:.0f}s"
    lines = status.stdout.strip().splitlines()
    assert {line.split()[0] for line in lines} >= {"postgres", "kafka", "mosquitto", "gateway"}
    assert all(" up " in line for line in lines), status.stdout
    (postgres_line,) = [line for line in lines if line.split()[0] == "postgres"]
    assert "TimescaleDB " in postgres_line or "plain PostgreSQL fallback" in postgres_line

    env_out = _run(cli_env, "env")
    assert env_out.returncode == 0
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in env_out.stdout.splitlines()
    )
    for key in (
        "GATEWAY_URL",
        "GATEWAY_USERNAME",
        "GATEWAY_PASSWORD",
        "MQTT_HOST",
        "MQTT_PORT",
        "MQTT_TLS_PORT",
        "MQTT_USERNAME",
        "MQTT_PASSWORD",
        "KAFKA_BOOTSTRAP",
        "DEVICES_DSN",
        "TIMESERIES_DSN",
        "CA_CERT",
        "PROVISION_TOKEN",
        "COMMAND_TOKEN",
    ):
        assert exported.get(key), key
    assert exported["GATEWAY_URL"].endswith(cli_env["F2_PORT_GATEWAY"])
    fns = requests.get(
        f"{exported['GATEWAY_URL']}/system/functions",
        timeout=5,
        auth=(exported["GATEWAY_USERNAME"], exported["GATEWAY_PASSWORD"]),
    ).json()
    assert {f["name"] for f in fns} == {"decode", "sink", "provision", "command", "command-reply"}

    again = _run(cli_env, "up")  # idempotent: nothing restarted, still healthy
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stdout

    down = _run(cli_env, "down")
    assert down.returncode == 0
    wait_for(
        lambda: not _processes_under(state),
        timeout=10,
        interval=0.2,
        message=lambda: f"left running: {_processes_under(state)}",
    )
    assert _processes_under(state) == []
    assert _run(cli_env, "status").returncode != 0
