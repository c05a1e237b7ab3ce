"""The local gateway as the tests start it: ``python -m infra.local.gateway`` for a project."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.local.ports import port_open
from infra.local.process import ManagedProcess

REPO = Path(__file__).resolve().parents[1]


def write_basic_auth(secrets: Path, user: str, password: str) -> None:
    """The gateway's basic-auth secrets in ``secrets``."""
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "basic-auth-user").write_text(user + "\n")
    (secrets / "basic-auth-password").write_text(password + "\n")


def start_gateway(
    project: Path,
    port: int,
    secrets: Path,
    *,
    stack: Path | None = None,
    state: Path | None = None,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> ManagedProcess:
    """The gateway of ``project`` (its stack.yml, build/ and state/) on ``port``, listening."""
    argv = [
        sys.executable,
        "-m",
        "infra.local.gateway",
        "--stack",
        str(stack or project / "stack.yml"),
        "--build-dir",
        str(project / "build"),
        "--state-dir",
        str(state or project / "state"),
        "--secrets-dir",
        str(secrets),
        "--port",
        str(port),
        *extra,
    ]
    process = ManagedProcess(
        "gateway", argv, project / "gateway.log", env=dict(env) if env else None, cwd=REPO
    ).start()
    process.wait_ready(lambda: port_open(port), timeout=timeout)
    return process
