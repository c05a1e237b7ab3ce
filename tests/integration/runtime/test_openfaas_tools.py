"""The template under the real of-watchdog, and build contexts against real faas-cli output.

Both come from the environment (``FAAS_CLI``, ``WATCHDOG_IMAGE``: tests/openfaas_tools.py); where
they are not given the tests skip and say so.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.ports import free_port, port_open
from infra.local.process import ManagedProcess
from tests.openfaas_tools import faas_cli

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def test_shrinkwrap_layout_matches_faas_cli(tmp_path: Path) -> None:
    cli = faas_cli()
    project = tmp_path / "project"
    for part in ("template", "functions", "stack.yml"):
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, project / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / part)
    result = subprocess.run(
        [str(cli), "build", "--shrinkwrap", "-f", "stack.yml"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ours = tmp_path / "ours"
    build_all(StackFile.load(project / "stack.yml"), ours)
    for fn in StackFile.load(project / "stack.yml").functions:
        cmp = filecmp.dircmp(project / "build" / fn, ours / fn)
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, fn


def test_template_contract_through_real_of_watchdog(tmp_path: Path, watchdog_binary: Path) -> None:
    watchdog = watchdog_binary
    if port_open(8081):
        pytest.skip("port 8081 (of-watchdog's fixed metrics port) is in use")
    shutil.copytree(REPO / "template", tmp_path / "template")
    handler = tmp_path / "functions" / "echo"
    handler.mkdir(parents=True)
    (handler / "handler.py").write_text(
        "def handle(event, context):\n"
        "    return {'statusCode': 201, 'body': {'echo': event.body.decode(),\n"
        "            'method': event.method}, 'headers': {'X-Handler': 'yes'}}\n"
    )
    (tmp_path / "stack.yml").write_text(
        "provider: {name: openfaas}\nfunctions:\n  echo:\n    lang: python3-http-f2\n"
        "    handler: ./functions/echo\n    image: echo\n"
    )
    build_all(StackFile.load(tmp_path / "stack.yml"), tmp_path / "build")
    port, upstream = free_port(), free_port()
    env = dict(
        os.environ,
        port=str(port),
        mode="http",
        fprocess=f"{sys.executable} index.py",
        upstream_url=f"http://127.0.0.1:{upstream}",
        F2_UPSTREAM_PORT=str(upstream),
        ready_path="/_/ready",
        exec_timeout="10s",
    )
    proc = ManagedProcess(
        "of-watchdog",
        [str(watchdog)],
        tmp_path / "wd.log",
        env=env,
        cwd=tmp_path / "build" / "echo",
    ).start()
    try:
        proc.wait_ready(
            lambda: requests.get(f"http://127.0.0.1:{port}/_/health", timeout=1).status_code == 200,
            timeout=30,
        )
        resp = requests.post(f"http://127.0.0.1:{port}/", data=b"hi", timeout=10)
        assert resp.status_code == 201
        assert resp.headers["X-Handler"] == "yes"
        assert resp.json() == {"echo": "hi", "method": "POST"}
        assert "X-Duration-Seconds" in resp.headers  # set by of-watchdog, not by the template
    finally:
        proc.stop()
