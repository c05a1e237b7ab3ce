"""The local runtime's watchdog: restarts a part that died, or one that stays unhealthy.

``make up`` records how it started each long-running part (a :class:`PartRecipe`: command,
environment, folder, user, log, pid file, and for services the URL saying whether they live)
in ``<state>/parts/<part>.json``. The watchdog (``python -m infra.local.watchdog``, a part of
the stack itself) looks at every part each ``interval_s``:

- a part whose process is gone is started again from its recipe: at once, then, while it
  keeps dying, after a backoff that a minute of staying up resets;
- a service whose ``/livez`` answers 503 (its ``/healthz`` failed for longer than the
  service's liveness grace) or that has not answered for ``silent_s`` (stopped, wedged) is
  stopped (SIGTERM, then SIGKILL) and started again.

Infrastructure (Kafka, PostgreSQL, Mosquitto) is restarted when it died, never for being slow:
a paused broker resumes with its data. What the watchdog did is in its log and in
``<state>/watchdog.json`` (restarts per part).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from f2lib.backoff import Backoff
from f2lib.errors import ProcessError
from infra.local.process import ManagedProcess, pid_alive, stop_group
from infra.local.settings import RuntimeConfig

logger = logging.getLogger(__name__)

RECIPES_DIR = "parts"
REPORT_FILE = "watchdog.json"
RESTART_BACKOFF = Backoff(base_s=1.0, cap_s=30.0)
STAYED_UP_S = 60.0  # a part up this long is no longer "dying again"
LIVE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class PartRecipe:
    """How a part was started, enough to start it again the same way."""

    name: str
    argv: list[str]
    log_path: str
    pid_path: str
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: str | None = None
    live_url: str | None = None  # a service's /livez (or the gateway's /healthz)
    stop_signal: int = int(signal.SIGTERM)

    @classmethod
    def of(
        cls,
        process: ManagedProcess,
        live_url: str | None = None,
        stop_signal: int | None = None,
        name: str | None = None,
    ) -> PartRecipe:
        """How ``process`` was started, under ``name`` (default: the process's own; the nodes
        of a Kafka cluster are all "kafka" and need a name each)."""
        if process.pid_path is None:
            raise ProcessError(f"{process.name} has no pid file: the watchdog could not find it")
        return cls(
            name=name or process.name,
            argv=list(process.argv),
            log_path=str(process.log_path),
            pid_path=str(process.pid_path),
            env=dict(process.env) if process.env is not None else None,
            cwd=str(process.cwd) if process.cwd is not None else None,
            user=process.user,
            live_url=live_url,
            stop_signal=int(signal.SIGTERM if stop_signal is None else stop_signal),
        )

    def process(self) -> ManagedProcess:
        return ManagedProcess(
            self.name,
            self.argv,
            Path(self.log_path),
            env=self.env,
            cwd=Path(self.cwd) if self.cwd else None,
            user=self.user,
            pid_path=Path(self.pid_path),
        )


def write_recipe(state_dir: Path, recipe: PartRecipe) -> None:
    """Record ``recipe`` (0600 in a 0700 folder: the environment is the part's own)."""
    folder = state_dir / RECIPES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{recipe.name}.json"
    staging = folder / f".{recipe.name}.json.new"
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(recipe), handle, indent=2)
    staging.replace(path)


def read_recipes(state_dir: Path) -> dict[str, PartRecipe]:
    recipes = {}
    for path in sorted((state_dir / RECIPES_DIR).glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            recipe = PartRecipe(**json.loads(path.read_text()))
            recipes[recipe.name] = recipe
    return recipes


@dataclass
class WatchdogConfig:
    """How often parts are looked at, and how long a service may stay silent."""

    interval_s: float = 2.0
    silent_s: float = 30.0
    stop_timeout_s: float = 15.0

    @classmethod
    def from_runtime(cls, config: RuntimeConfig) -> WatchdogConfig:
        return cls(interval_s=config.watchdog_interval_s, silent_s=config.watchdog_silent_s)


@dataclass
class PartState:
    """What the watchdog knows of one part between two looks."""

    restarts: int = 0
    deaths_in_a_row: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    silent_since: float | None = None
    process: ManagedProcess | None = None  # when the watchdog started it (it reaps it)
    last_reason: str = ""


LiveCheck = Callable[[str], int | None]


def http_status(url: str) -> int | None:
    """The status ``url`` answers with, or None when it does not answer."""
    try:
        return requests.get(url, timeout=LIVE_TIMEOUT_S).status_code
    except requests.RequestException:
        return None


@dataclass
class Watchdog:
    """Keeps the recorded parts of one state folder running."""

    state_dir: Path
    config: WatchdogConfig = field(default_factory=WatchdogConfig)
    live: LiveCheck = http_status
    clock: Callable[[], float] = time.monotonic
    states: dict[str, PartState] = field(default_factory=dict)

    def run(self, stop: threading.Event) -> None:
        logger.info("watchdog on %s every %.1fs", self.state_dir, self.config.interval_s)
        while not stop.wait(self.config.interval_s):
            self.check()

    def check(self) -> list[str]:
        """Look at every part once; returns the parts (re)started."""
        started = []
        for name, recipe in read_recipes(self.state_dir).items():
            state = self.states.setdefault(name, PartState(started_at=self.clock()))
            try:
                if self._look(recipe, state):
                    started.append(name)
            except Exception:  # one part's trouble must not stop the watch over the others
                logger.exception("watching %s failed", name)
        if started:
            self._report()
        return started

    def _look(self, recipe: PartRecipe, state: PartState) -> bool:
        now = self.clock()
        if state.process is not None:
            state.process.alive()  # reaps it when it has exited
        if not self._alive(recipe):
            if now < state.next_start_at:
                return False
            if now - state.started_at >= STAYED_UP_S:
                state.deaths_in_a_row = 0
            state.deaths_in_a_row += 1
            return self._start(recipe, state, f"died ({self._exit_of(state)})")
        if recipe.live_url is None:
            return False
        status = self.live(recipe.live_url)
        if status is not None and status < 500:
            state.silent_since = None
            if now - state.started_at >= STAYED_UP_S:
                state.deaths_in_a_row = 0
            return False
        if status is not None:
            reason = f"{recipe.live_url} answered {status} (unhealthy past its grace)"
        else:
            if state.silent_since is None:
                state.silent_since = now
            if now - state.silent_since < self.config.silent_s:
                return False
            reason = f"{recipe.live_url} silent for {now - state.silent_since:.0f}s"
        logger.warning("%s: %s; restarting it", recipe.name, reason)
        self._stop(recipe)
        return self._start(recipe, state, reason)

    def _alive(self, recipe: PartRecipe) -> bool:
        pid = self._pid(recipe)
        return pid is not None and pid_alive(pid)

    @staticmethod
    def _pid(recipe: PartRecipe) -> int | None:
        try:
            return int(Path(recipe.pid_path).read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _exit_of(state: PartState) -> str:
        popen = state.process.popen if state.process is not None else None
        return f"exit code {popen.returncode}" if popen is not None else "gone"

    def _stop(self, recipe: PartRecipe) -> None:
        pid = self._pid(recipe)
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            stop_group(pid, timeout=self.config.stop_timeout_s, signum=recipe.stop_signal)

    def _start(self, recipe: PartRecipe, state: PartState, reason: str) -> bool:
        now = self.clock()
        state.next_start_at = now + RESTART_BACKOFF.delay(max(1, state.deaths_in_a_row))
        state.started_at, state.silent_since = now, None
        state.restarts += 1
        state.last_reason = reason
        logger.warning("%s %s: starting it again (restart %d)", recipe.name, reason,
                       state.restarts)  # fmt: skip
        try:
            state.process = recipe.process().start()
        except (OSError, ProcessError) as exc:
            logger.error("%s could not be started: %s", recipe.name, exc)
            return False
        return True

    def _report(self) -> None:
        report = {
            name: {"restarts": s.restarts, "last_reason": s.last_reason}
            for name, s in sorted(self.states.items())
            if s.restarts
        }
        path = self.state_dir / REPORT_FILE
        staging = path.with_name(f".{path.name}.new")
        staging.write_text(json.dumps(report, indent=2) + "\n")
        staging.replace(path)


def restarts(state_dir: Path) -> Mapping[str, int]:
    """How many times the watchdog restarted each part (from its report)."""
    try:
        report = json.loads((state_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {name: int(entry.get("restarts", 0)) for name, entry in report.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.watchdog", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    runtime = RuntimeConfig()
    logging.basicConfig(
        level=(runtime.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Watchdog(args.state_dir.resolve(), WatchdogConfig.from_runtime(runtime)).run(stop)
    logger.info("watchdog stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
