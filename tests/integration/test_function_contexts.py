"""Every function's build context serves from its own requirements, in a virtualenv of its own.

What `make build` writes (the layout `faas-cli build --shrinkwrap` writes) is installed into a
clean virtualenv, without the project's packages on the path, and the template's server is
started from it: a dependency missing from a function's requirements fails here in seconds,
without Docker, instead of as a crash-looping image.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_context
from infra.local.ports import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
STACK = StackFile.load(ROOT / "stack.yml")
# What each function answers, with no secret and no service behind it: its handler's own refusal
# (an empty batch), or its clean "misconfigured" answer for the missing secrets.
REFUSALS = {
    "decode": ("POST", b"", 400),
    "sink": ("POST", b"", 400),
    "provision": ("POST", b"{}", 500),
    "command": ("POST", b"{}", 500),
    "command-reply": ("POST", b"", 400),
}


def _venv_for(context: Path, cache: Path) -> Path:
    """A clean virtualenv with the context's requirements (one per requirements content)."""
    requirements = [context / "requirements.txt", context / "function" / "requirements.txt"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in requirements)).hexdigest()[:16]
    venv = cache / f"venv-{digest}"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        args = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        for path in requirements:
            args += ["-r", str(path)]
        subprocess.run(args, check=True, timeout=600)
        (venv / ".complete").touch()
    return venv


@pytest.fixture(scope="module")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("function-venvs")


def test_every_function_of_the_stack_is_checked() -> None:
    assert set(REFUSALS) == set(STACK.functions)


@pytest.mark.parametrize("name", sorted(STACK.functions))
def test_build_context__serves_from_its_own_requirements(
    name: str, venv_cache: Path, tmp_path: Path
) -> None:
    context = build_context(STACK, STACK.functions[name], tmp_path / "build")
    venv = _venv_for(context, venv_cache)
    port = free_port()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "F2_UPSTREAM_HOST": "127.0.0.1",
        "F2_UPSTREAM_PORT": str(port),
        "F2_SECRETS_DIR": str(secrets),
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(venv / "bin" / "python"), "-E", "-s", "index.py"],
            cwd=context,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def answer() -> list[requests.Response]:
            if server.poll() is not None:
                pytest.fail(f"{name} exited at start ({server.returncode}):\n{log.read_text()}")
            try:
                return [requests.get(f"{base}/_/ready", timeout=1)]
            except requests.ConnectionError:
                return []

        (ready,) = wait_for(
            answer,
            timeout=30,
            interval=0.1,
            message=lambda: f"{name} never listened:\n{log.read_text()}",
        )
        assert ready.status_code == 200
        method, body, status = REFUSALS[name]
        answer = requests.request(method, base, data=body, timeout=10)
        assert answer.status_code == status, answer.text
        assert "error" in json.loads(answer.text)
        metrics = requests.get(f"{base}/_/metrics", timeout=5)
        assert metrics.status_code == 200 and "f2_function" in metrics.text
    finally:
        server.terminate()
        server.wait(timeout=10)
