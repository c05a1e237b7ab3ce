"""The local runtime's watchdog, on real short-lived processes (their liveness answers faked)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from infra.local.process import ManagedProcess, pid_alive, stop_pidfile
from infra.local.watchdog import (
    PartRecipe,
    Watchdog,
    WatchdogConfig,
    read_recipes,
    restarts,
    write_recipe,
)
from tests.waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
QUITTER = [sys.executable, "-c", "raise SystemExit(3)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Path:
    yield tmp_path
    for recipe in read_recipes(tmp_path).values():
        stop_pidfile(Path(recipe.pid_path), timeout=5)


def started(state: Path, name: str, argv: list[str], live_url: str | None = None) -> PartRecipe:
    process = ManagedProcess(
        name, argv, state / f"{name}.log", pid_path=state / "pids" / f"{name}.pid"
    ).start()
    recipe = PartRecipe.of(process, live_url)
    write_recipe(state, recipe)
    return recipe


def pid_of(recipe: PartRecipe) -> int:
    return int(Path(recipe.pid_path).read_text())


def test_recipe__is_written_private_and_read_back_the_same(state: Path) -> None:
    recipe = started(state, "part", SLEEPER, "http://127.0.0.1:1/livez")
    assert read_recipes(state) == {"part": recipe}
    assert (state / "parts" / "part.json").stat().st_mode & 0o777 == 0o600
    assert (state / "parts").stat().st_mode & 0o777 == 0o700


def test_dead_part__is_started_again_from_its_recipe(state: Path) -> None:
    recipe = started(state, "bridge", SLEEPER)
    first = pid_of(recipe)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not pid_alive(first))

    watchdog = Watchdog(state)
    assert watchdog.check() == ["bridge"]
    second = pid_of(recipe)
    assert second != first and pid_alive(second)
    assert restarts(state) == {"bridge": 1}
    assert watchdog.check() == [], "a live part is left alone"


def test_part_that_keeps_dying__is_started_again_after_a_growing_pause(state: Path) -> None:
    clock = Clock()
    recipe = started(state, "quitter", QUITTER)
    watchdog = Watchdog(state, clock=clock)
    wait_for(lambda: not pid_alive(pid_of(recipe)))
    assert watchdog.check() == ["quitter"]  # the first death: at once
    wait_for(lambda: watchdog.states["quitter"].process is not None
             and not watchdog.states["quitter"].process.alive())  # fmt: skip
    clock.now += 0.5
    assert watchdog.check() == [], "dying again within a second: it waits"
    clock.now += 0.6
    assert watchdog.check() == ["quitter"]
    wait_for(lambda: not watchdog.states["quitter"].process.alive())  # type: ignore[union-attr]
    clock.now += 1.5
    assert watchdog.check() == [], "then two seconds"
    clock.now += 0.6
    assert watchdog.check() == ["quitter"]
    assert "exit code 3" in watchdog.states["quitter"].last_reason


def test_service_whose_livez_says_503__is_stopped_and_started_again(state: Path) -> None:
    recipe = started(state, "connector", SLEEPER, "http://127.0.0.1:9/livez")
    answers = {"http://127.0.0.1:9/livez": 200}
    watchdog = Watchdog(state, live=answers.get)
    first = pid_of(recipe)
    assert watchdog.check() == []
    answers["http://127.0.0.1:9/livez"] = 503
    assert watchdog.check() == ["connector"]
    assert not pid_alive(first) and pid_alive(pid_of(recipe))
    assert "answered 503" in watchdog.states["connector"].last_reason


def test_service_that_does_not_answer__is_restarted_only_after_the_silent_grace(
    state: Path,
) -> None:
    clock = Clock()
    recipe = started(state, "bridge", SLEEPER, "http://127.0.0.1:9/livez")
    os.kill(pid_of(recipe), signal.SIGSTOP)  # stopped: alive, silent
    first = pid_of(recipe)
    watchdog = Watchdog(state, WatchdogConfig(silent_s=30.0), live=lambda url: None, clock=clock)
    assert watchdog.check() == []
    clock.now += 29.0
    assert watchdog.check() == []
    clock.now += 1.0
    assert watchdog.check() == ["bridge"]
    assert not pid_alive(first), "a stopped process is continued, then stopped"
    assert "silent for 30s" in watchdog.states["bridge"].last_reason


def test_infrastructure_without_a_live_url__is_never_restarted_for_being_slow(
    state: Path,
) -> None:
    recipe = started(state, "kafka", SLEEPER)
    os.kill(pid_of(recipe), signal.SIGSTOP)  # a paused broker resumes with its data
    try:
        watchdog = Watchdog(state, WatchdogConfig(silent_s=0.1), live=lambda url: None)
        assert watchdog.check() == []
    finally:
        os.kill(pid_of(recipe), signal.SIGCONT)


def test_nodes_of_one_name__each_kept_and_restarted_under_its_own_part_name(state: Path) -> None:
    # Seen in the fault matrix: the three Kafka nodes are all processes named "kafka"; their
    # recipes overwrote each other, so only the last node was watched and a killed controller
    # (node 2) was never started again.
    recipes = []
    for part in ("kafka", "kafka-2", "kafka-3"):
        process = ManagedProcess(
            "kafka", SLEEPER, state / f"{part}.log", pid_path=state / "pids" / f"{part}.pid"
        ).start()
        recipes.append(PartRecipe.of(process, name=part))
        write_recipe(state, recipes[-1])
    assert sorted(read_recipes(state)) == ["kafka", "kafka-2", "kafka-3"]
    dog = Watchdog(state)
    assert dog.check() == []
    old = pid_of(recipes[1])
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), message="node 2 is gone")
    assert dog.check() == ["kafka-2"]
    assert pid_alive(pid_of(recipes[1])) and pid_of(recipes[1]) != old
