"""The service runner: secret, stop event, ops endpoint, build, run, close, exit code."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from f2lib.errors import ConfigError, StreamError
from f2lib.secrets import SecretStore
from infra.local.ports import free_port
from infra.services.kit.ops_http import Liveness
from infra.services.kit.runner import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Service, run_service
from tests.waiting import wait_for


class Settings:
    """A service's settings as the runner reads them."""

    def __init__(self, http_port: int | None, liveness_grace_s: float = 120.0) -> None:
        self.log_level = "INFO"
        self.http_host = "127.0.0.1"
        self.http_port = http_port
        self.liveness_grace_s = liveness_grace_s


def secret(store: SecretStore) -> str:
    return "s3cret"


def run(build: Any, http_port: int | None = None, **kwargs: Any) -> int:
    return run_service("test", Settings(http_port), secret, build, signals=(), **kwargs)


def test_run_service__exits_2_without_building_when_the_secret_cannot_be_read() -> None:
    built: list[object] = []

    def missing(store: SecretStore) -> str:
        raise ConfigError("secret 'x' not found")

    code = run_service("test", Settings(None), missing, lambda s, stop: built.append(s), signals=())
    assert code == EXIT_CONFIG
    assert built == []


def test_run_service__gives_the_secret_to_build_and_returns_the_loops_code() -> None:
    seen: list[str] = []

    def build(password: str, stop: threading.Event) -> Service:
        seen.append(password)
        return Service(lambda stop: 3, lambda: (True, {}))

    assert run(build) == 3
    assert seen == ["s3cret"]


def test_run_service__exits_0_when_stopped_before_the_service_was_built() -> None:
    assert run(lambda password, stop: None) == EXIT_OK


def test_run_service__closes_in_order_after_a_failed_loop_and_exits_1() -> None:
    closed: list[str] = []

    def fail(stop: threading.Event) -> None:
        raise StreamError("kafka gone")

    def broken_close() -> None:
        closed.append("first")
        raise OSError("already closed")

    def build(password: str, stop: threading.Event) -> Service:
        return Service(fail, lambda: (True, {}), closers=(broken_close, lambda: closed.append("2")))

    assert run(build) == EXIT_FAILED
    assert closed == ["first", "2"]


def test_run_service__ops_endpoint_says_starting_then_serves_the_service_until_stopped() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    registry = CollectorRegistry()
    Counter("runner_test_things", "things", registry=registry).inc()
    building, release, running = threading.Event(), threading.Event(), threading.Event()
    stops: list[threading.Event] = []

    def loop(stop: threading.Event) -> None:
        running.set()
        stop.wait()

    def build(password: str, stop: threading.Event) -> Service:
        stops.append(stop)
        building.set()
        release.wait(10)
        return Service(loop, lambda: (True, {"kafka": True}))

    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(run(build, port, registry=registry)))
    runner.start()
    try:
        assert building.wait(10)
        starting = requests.get(f"{url}/healthz", timeout=5)
        assert starting.status_code == 503
        assert starting.json() == {"healthy": False, "starting": True}
        release.set()
        assert running.wait(10)
        healthy = requests.get(f"{url}/healthz", timeout=5)
        assert healthy.status_code == 200
        assert healthy.json() == {"healthy": True, "kafka": True}
        assert "runner_test_things_total 1.0" in requests.get(f"{url}/metrics", timeout=5).text
    finally:
        release.set()
        for stop in stops:
            stop.set()
        runner.join(10)
    assert result == [EXIT_OK]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=5)


def test_livez__stays_200_while_unhealthy_for_less_than_the_grace_then_asks_for_a_restart() -> None:
    now = [100.0]
    verdict = {"healthy": False}
    liveness = Liveness(lambda: (verdict["healthy"], {"kafka": verdict["healthy"]}), 60.0,
                        clock=lambda: now[0])  # fmt: skip
    assert liveness.alive() == (True, {"healthy": False, "unhealthy_for_s": 0.0, "grace_s": 60.0,
                                       "kafka": False})  # fmt: skip
    now[0] += 59.0
    assert liveness.alive()[0] is True
    now[0] += 1.0
    alive, details = liveness.alive()
    assert alive is False and details["unhealthy_for_s"] == 60.0
    verdict["healthy"] = True
    assert liveness.alive() == (True, {"healthy": True})
    verdict["healthy"] = False
    now[0] += 500.0
    assert liveness.alive()[0] is True, "the grace starts again after a healthy answer"


def test_livez__a_health_check_that_raises_counts_as_unhealthy() -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("no")

    now = [0.0]
    liveness = Liveness(broken, 1.0, clock=lambda: now[0])
    assert liveness.health() == (False, {"error": "RuntimeError"})
    now[0] = 1.0
    assert liveness.alive()[0] is False


def test_run_service__livez_answers_503_once_unhealthy_for_the_configured_grace() -> None:
    port = free_port()
    stops: list[threading.Event] = []

    def loop(stop: threading.Event) -> None:
        stop.wait()

    def build(password: str, stop: threading.Event) -> Service:
        stops.append(stop)
        return Service(loop, lambda: (False, {"kafka": False}))

    result: list[int] = []
    settings = Settings(port, liveness_grace_s=0.3)
    runner = threading.Thread(
        target=lambda: result.append(run_service("t", settings, secret, build, signals=()))
    )
    runner.start()
    try:
        url = f"http://127.0.0.1:{port}/livez"
        first = wait_for(lambda: _get(url), message="the ops endpoint answers")
        assert first.status_code == 200 and first.json()["alive"] is True
        late = wait_for(lambda: [r for r in [_get(url)] if r is not None and r.status_code == 503])
        assert late[0].json()["kafka"] is False and late[0].json()["unhealthy_for_s"] >= 0.3
    finally:
        wait_for(lambda: stops)
        for stop in stops:
            stop.set()
        runner.join(10)
    assert result == [EXIT_OK]


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None
