"""The real faas-cli against the local gateway: the commands a user runs, on both backends.

faas-cli comes from ``FAAS_CLI`` and the of-watchdog image from ``WATCHDOG_IMAGE`` (see
tests/openfaas_tools.py); without them these tests skip and say so. On the process backend:
``list``, ``describe``, ``invoke``, ``logs``, ``secret create/list/remove``, ``namespace list``,
``version``, ``deploy`` and ``remove``. On the container backend: ``faas-cli up`` builds the
image with the template, pushes it to the local registry and replaces the running containers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.launch.registry import LocalRegistry
from infra.local.ports import free_port
from infra.local.process import ManagedProcess
from tests.fixtures.docker import Engine
from tests.gateway_support import start_gateway, write_basic_auth
from tests.openfaas_tools import faas_cli, watchdog_image
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
AUTH = ("admin", "cli-test-pw")

HANDLER = """
import os

def handle(event, context):
    print("echo handled", event.method, flush=True)
    return {"statusCode": 200, "body": {"version": os.environ.get("VERSION"),
            "body": event.body.decode()}}
"""

STACK = """
version: 1.0
provider: {{name: openfaas, gateway: {gateway}}}
functions:
  echo:
    lang: python3-http-f2
    handler: ./functions/echo
    image: {image}
    environment: {{VERSION: "{version}"}}
"""


@dataclass
class Project:
    root: Path
    url: str
    home: Path
    env: dict[str, str]

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(faas_cli()), *args],
            cwd=self.root,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr


def make_project(root: Path, url: str, image: str, version: str) -> None:
    shutil.copytree(REPO / "template", root / "template", dirs_exist_ok=True)
    (root / "functions" / "echo").mkdir(parents=True, exist_ok=True)
    (root / "functions" / "echo" / "handler.py").write_text(HANDLER)
    (root / "stack.yml").write_text(STACK.format(gateway=url, image=image, version=version))


def gateway(root: Path, port: int, extra: list[str]) -> ManagedProcess:
    write_basic_auth(root / "secrets", *AUTH)
    build_all(StackFile.load(root / "stack.yml"), root / "build")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"}
    return start_gateway(root, port, root / "secrets", extra=extra, env=env, timeout=180)


def logged_in(root: Path, url: str, extra_env: dict[str, str] | None = None) -> Project:
    home = root / "home"
    home.mkdir(exist_ok=True)
    # Debian's docker client first: the machine's other CLI has no buildx.
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "OPENFAAS_URL": url,  # the commands that take no stack.yml
        **(extra_env or {}),
    }
    project = Project(root, url, home, env)
    project.cli("login", "--gateway", url, "--username", AUTH[0], "--password-stdin", stdin=AUTH[1])
    return project


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    faas_cli()
    root = tmp_path_factory.mktemp("cli-processes")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    make_project(root, url, "f2pipe-test/echo:cli", "one")
    proc = gateway(root, port, [])
    try:
        yield logged_in(root, url)
    finally:
        proc.stop()


def test_faas_cli_list_and_describe_show_the_function(processes: Project) -> None:
    assert "echo" in processes.cli("list")
    described = processes.cli("describe", "echo")
    assert "f2pipe-test/echo:cli" in described
    assert "Status:" in described and "Ready" in described


def test_faas_cli_invoke_calls_the_function_and_describe_counts_it(processes: Project) -> None:
    answer = processes.cli("invoke", "echo", stdin="from the cli")
    assert json.loads(answer.strip().splitlines()[-1]) == {"version": "one", "body": "from the cli"}
    described = processes.cli("describe", "echo")
    count = next(line for line in described.splitlines() if line.startswith("Invocations:"))
    assert int(count.split(":")[1]) >= 1


def test_faas_cli_logs_prints_the_replicas_lines(processes: Project) -> None:
    processes.cli("invoke", "echo", stdin="for the log")
    logs = processes.cli("logs", "echo", "--tail=false", "--lines=50")
    assert "echo handled POST" in logs


def test_faas_cli_secret_create_list_and_remove(processes: Project) -> None:
    processes.cli("secret", "create", "cli-secret", "--from-literal", "not-printed")
    listed = processes.cli("secret", "list")
    assert "cli-secret" in listed and "not-printed" not in listed
    processes.cli("secret", "remove", "cli-secret")
    assert "cli-secret" not in processes.cli("secret", "list")


def test_faas_cli_namespace_list_and_version(processes: Project) -> None:
    assert "openfaas-fn" in processes.cli("namespace", "list")
    version = processes.cli("version", check=False)
    assert "f2pipe-local" in version and "processes" in version


def test_faas_cli_deploy_then_remove(processes: Project) -> None:
    make_project(processes.root, processes.url, "f2pipe-test/echo:cli", "two")
    processes.cli("build", "--shrinkwrap", "-f", "stack.yml")
    build_all(StackFile.load(processes.root / "stack.yml"), processes.root / "build")
    processes.cli("deploy", "-f", "stack.yml")
    assert requests.get(f"{processes.url}/function/echo", timeout=30).json()["version"] == "two"
    processes.cli("remove", "echo")
    assert requests.get(f"{processes.url}/function/echo", timeout=30).status_code == 404


def test_faas_cli_up_builds_pushes_and_replaces_the_running_containers(
    docker_engine: Engine, runtime_root: Path, tmp_path: Path
) -> None:
    faas_cli()
    watchdog = watchdog_image()
    registry = LocalRegistry(tmp_path / "registry", free_port()).start()
    python = docker_engine.builder.python_base()
    assert docker_engine.builder.watchdog() == watchdog
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    image = f"{registry.address}/f2pipe-test/echo:up"
    make_project(tmp_path, url, image, "before")
    contexts = build_all(StackFile.load(tmp_path / "stack.yml"), tmp_path / "build")
    docker_engine.builder.build("echo", contexts["echo"], image, python, watchdog)
    proc = gateway(
        tmp_path,
        port,
        [
            "--backend",
            "containers",
            "--docker-host",
            docker_engine.host,
            "--service-host",
            "127.0.0.1",
        ],
    )
    try:
        before = docker_engine.docker.run(
            "ps", "--filter", "label=f2pipe.function=echo", "--format", "{{.Names}}"
        ).stdout.split()
        assert requests.get(f"{url}/function/echo", timeout=30).json()["version"] == "before"
        make_project(tmp_path, url, image, "after")
        project = logged_in(tmp_path, url, {"DOCKER_HOST": docker_engine.host})
        project.cli(
            "up",
            "-f",
            "stack.yml",
            "--build-arg",
            f"PYTHON_IMAGE={python}",
            "--build-arg",
            f"WATCHDOG_IMAGE={watchdog}",
        )
        catalog = requests.get(f"http://{registry.address}/v2/_catalog", timeout=10).json()
        assert "f2pipe-test/echo" in catalog["repositories"]

        def replaced() -> bool:
            answer = requests.get(f"{url}/function/echo", timeout=30)
            return answer.ok and answer.json()["version"] == "after"

        wait_for(replaced, timeout=120, message="the rolling update never answered 'after'")
        after = docker_engine.docker.run(
            "ps", "--filter", "label=f2pipe.function=echo", "--format", "{{.Names}}"
        ).stdout.split()
        assert after and not set(after) & set(before)
        top = docker_engine.docker.run("top", after[0]).stdout
        assert "fwatchdog" in top.splitlines()[1]  # PID 1 of the container
    finally:
        proc.stop()
        registry.stop()
