"""The watchdog restarts a real service that stays unhealthy past its liveness grace."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local.ports import free_port
from infra.local.process import ManagedProcess, pid_alive, stop_pidfile
from infra.local.watchdog import PartRecipe, Watchdog, WatchdogConfig, restarts, write_recipe
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Path]:
    stop = threading.Event()
    watchdog = Watchdog(tmp_path, WatchdogConfig(interval_s=0.5))
    thread = threading.Thread(target=watchdog.run, args=(stop,), daemon=True)
    thread.start()
    yield tmp_path
    stop.set()
    thread.join(10)
    stop_pidfile(tmp_path / "pids" / "bridge.pid", timeout=20)


def test_watchdog__restarts_a_bridge_whose_livez_fails_past_its_grace(watched: Path) -> None:
    """A bridge that cannot reach Kafka is unhealthy ("starting"); after its liveness grace
    (2 s here) /livez answers 503 and the watchdog restarts it."""
    secrets = watched / "secrets"
    secrets.mkdir()
    (secrets / "mqtt-bridge-password").write_text("unused\n")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'functions'}",
        "F2_SECRETS_DIR": str(secrets),
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": str(port),
        "F2_LIVENESS_GRACE_SECONDS": "2",
    }
    bridge = ManagedProcess(
        "bridge",
        [sys.executable, "-m", "bridge"],
        watched / "bridge.log",
        env=env,
        cwd=ROOT,
        pid_path=watched / "pids" / "bridge.pid",
    ).start()
    write_recipe(watched, PartRecipe.of(bridge, f"http://127.0.0.1:{port}/livez"))
    first = bridge.pid
    assert first is not None

    def livez() -> dict[str, object] | None:
        try:
            return dict(requests.get(f"http://127.0.0.1:{port}/livez", timeout=2).json())
        except requests.RequestException:
            return None

    seen = wait_for(livez, timeout=60, message="the bridge's /livez answers")
    assert seen["alive"] is True and seen["healthy"] is False, seen  # within its grace
    wait_for(lambda: restarts(watched).get("bridge") == 1, timeout=60, message="restarted once")
    assert not pid_alive(first)
    second = int((watched / "pids" / "bridge.pid").read_text())
    assert second != first and pid_alive(second)
    wait_for(
        lambda: (watched / "bridge.log").read_text().count("ops endpoint on") == 2,
        message="the restarted bridge serves its ops endpoint, logging to the same file",
    )
