"""Managed child processes: start detached with a log file, wait for readiness, stop cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from f2lib.errors import ProcessError as ProcessError  # re-exported: the launchers raise it

logger = logging.getLogger(__name__)

# The environment of a process run as another user when none is given: none of ours (it may hold
# credentials), that user's HOME, a system PATH and a UTF-8 locale.
SERVICE_USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or an empty string."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One service process in its own session, its output appended to ``log_path``.

    ``env`` is the whole environment of the process; None inherits this process's, except for
    a process run as ``user`` (as root), which gets a minimal one of its own.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        pid_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.pid_path = pid_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(self.env) if self.env is not None else None
        kwargs: dict[str, object] = {}
        if self.user is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            env = env if env is not None else {"PATH": SERVICE_USER_PATH, "LANG": "C.UTF-8"}
            env["HOME"] = entry.pw_dir
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                **kwargs,  # type: ignore[call-overload]
            )
        if self.pid_path is not None:
            self.pid_path.parent.mkdir(parents=True, exist_ok=True)
            self.pid_path.write_text(f"{self.popen.pid}\n")
        logger.info("started %s pid=%s log=%s", self.name, self.popen.pid, self.log_path)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        """Poll ``check`` until true; raise with the log tail on death or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessError(
                    f"{self.name} exited with {self.popen.returncode if self.popen else '?'}"
                    f" before it was ready; log tail:\n{log_tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(interval)
        raise ProcessError(
            f"{self.name} not ready after {timeout:.0f}s; log tail:\n{log_tail(self.log_path)}"
        )

    def send_signal(self, signum: int) -> None:
        if self.alive() and self.popen is not None:
            os.kill(self.popen.pid, signum)

    def stop(self, timeout: float = 15.0, signum: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait, then kill what is left. Returns the exit code."""
        if self.popen is None:
            return None
        stop_group(self.popen.pid, timeout=timeout, signum=signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)
        if self.pid_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
        logger.info("stopped %s rc=%s", self.name, self.popen.returncode)
        return self.popen.returncode


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            return False
    return True


def stop_group(pid: int, timeout: float = 15.0, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to the process group led by ``pid``; SIGKILL it after ``timeout``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_pidfile(pid_path: Path, timeout: float = 15.0, signum: int = signal.SIGTERM) -> bool:
    """Stop the process group whose leader's pid is in ``pid_path``. True if one was running."""
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    running = pid_alive(pid)
    if running:
        stop_group(pid, timeout=timeout, signum=signum)
    with contextlib.suppress(FileNotFoundError):
        pid_path.unlink()
    return running


def make_traversable(path: Path) -> None:
    """Add search (o+x) permission to ``path`` and its ancestors, so a service user can reach it.

    Services such as PostgreSQL and Mosquitto run as their own users; a state folder under a
    private temporary folder (pytest's are 0700) would otherwise be out of their reach.
    """
    for directory in (path, *path.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            continue
        if not mode & 0o001 and directory.owner() == pwd.getpwuid(os.geteuid()).pw_name:
            directory.chmod(mode | 0o001)
