"""`python -m infra.local` (make up/status/env/down) on a private state folder and free ports."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local.ports import free_port
from infra.local.process import pid_alive
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


def _pid(state: Path, part: str) -> int:
    return int((state / "pids" / f"{part}.pid").read_text())


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def test_watchdog__parts_killed_with_sigkill_are_started_again_and_down_leaves_nothing(
    cli_env: dict[str, str],
) -> None:
    """kill -9 of the connector and of the gateway (whose replicas run on in sessions of their
    own): the watchdog starts both again, the new gateway stops the old one's replicas, the
    stack is healthy again, and `down` leaves no process behind."""
    state = Path(cli_env["F2_STATE_DIR"])
    up = _run(cli_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    old = {part: _pid(state, part) for part in ("connector", "gateway")}
    old_replicas = [int(p.read_text()) for p in (state / "gateway" / "pids").glob("*.pid")]
    assert old_replicas, "the gateway keeps its replicas' pids"
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        return all(
            (state / "pids" / f"{part}.pid").exists() and _pid(state, part) != pid
            for part, pid in old.items()
        )

    wait_for(restarted, timeout=60, message="the watchdog starts the killed parts again")
    gateway_url = f"http://127.0.0.1:{cli_env['F2_PORT_GATEWAY']}/healthz"
    wait_for(lambda: _healthy(gateway_url), timeout=120, message="the new gateway serves")
    wait_for(
        lambda: not any(pid_alive(pid) for pid in old_replicas),
        timeout=60,
        message="the killed gateway's replicas are stopped by its successor",
    )
    status = wait_for(
        lambda: (s := _run(cli_env, "status")).returncode == 0 and s,
        timeout=120,
        interval=2,
        message="the stack is healthy again",
    )
    assert "watchdog" in status.stdout and "connector 1x" in status.stdout, status.stdout

    assert _run(cli_env, "down").returncode == 0
    wait_for(
        lambda: not _processes_under(state),
        timeout=20,
        interval=0.2,
        message=lambda: f"left running: {_processes_under(state)}",
    )
