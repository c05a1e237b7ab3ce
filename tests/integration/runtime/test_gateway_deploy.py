"""Deploying through the local gateway's REST API as `faas-cli deploy` / `faas-cli remove` do.

`faas-cli deploy` sends PUT /system/functions (POST for a new function) with
{service, image, envVars, labels, annotations, secrets, ...}; `faas-cli remove` sends
DELETE /system/functions {"functionName"}. The gateway runs the function from its
shrinkwrapped build folder (build/<fn>/, as `faas-cli build --shrinkwrap` writes it), so a
rebuilt folder plus a deploy replaces the running function without restarting the stack.
The last test drives the real faas-cli when ``FAAS_CLI`` names one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all, build_context
from infra.local.ports import free_port
from infra.local.process import ManagedProcess
from tests.gateway_support import start_gateway, write_basic_auth
from tests.openfaas_tools import faas_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
AUTH = ("admin", "deploy-pw")

HANDLER = """
import os

VERSION = "{version}"

def handle(event, context):
    secret_dir = os.environ.get("F2_SECRETS_DIR", "")
    return {{
        "statusCode": 200,
        "body": {{"version": VERSION, "pid": os.getpid(), "greeting": os.environ.get("GREETING"),
                  "secrets": sorted(os.listdir(secret_dir)) if secret_dir else []}},
        "headers": {{}},
    }}
"""

PROJECT_STACK = """
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  echo:
    lang: python3-http-f2
    handler: ./functions/echo
    image: test/echo:1
  greeter:
    lang: python3-http-f2
    handler: ./functions/greeter
    image: test/greeter:1
    environment: {GREETING: hello}
    labels: {com.openfaas.scale.min: "1", com.openfaas.scale.max: "3"}
    annotations: {topic: decoded_iot_data}
    secrets: [greeter-secret]
"""

# what the gateway starts with: greeter is deployed later through the API
GATEWAY_STACK = """
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  echo:
    lang: python3-http-f2
    handler: ./functions/echo
    image: test/echo:1
"""


@dataclass
class Gateway:
    url: str
    project: Path
    process: ManagedProcess

    def write_handler(self, name: str, version: str) -> None:
        folder = self.project / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "handler.py").write_text(HANDLER.format(version=version))

    def rebuild(self, name: str) -> None:
        """What `faas-cli build --shrinkwrap --filter <name>` does to build/<name>/."""
        stack = StackFile.load(self.project / "stack.yml")
        build_context(stack, stack.functions[name], self.project / "build")

    def system(self, method: str, body: Any, auth: tuple[str, str] | None = AUTH) -> Any:
        return requests.request(
            method, f"{self.url}/system/functions", data=json.dumps(body), auth=auth, timeout=90
        )

    def invoke(self, name: str) -> requests.Response:
        return requests.post(f"{self.url}/function/{name}", data=b"{}", timeout=30)

    def describe(self, name: str) -> requests.Response:
        return requests.get(f"{self.url}/system/function/{name}", auth=AUTH, timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    project = tmp_path_factory.mktemp("deployproj")
    shutil.copytree(
        REPO / "template", project / "template", ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "stack.yml").write_text(PROJECT_STACK)
    (project / "gateway-stack.yml").write_text(GATEWAY_STACK)
    secrets = project / "secrets"
    write_basic_auth(secrets, *AUTH)
    (secrets / "greeter-secret").write_text("s\n")
    port = free_port()
    gw = Gateway(f"http://127.0.0.1:{port}", project, None)  # type: ignore[arg-type]
    gw.write_handler("echo", "echo")
    gw.write_handler("greeter", "v1")
    build_all(StackFile.load(project / "stack.yml"), project / "build")
    gw.process = start_gateway(project, port, secrets, stack=project / "gateway-stack.yml")
    yield gw
    gw.process.stop()
    assert not gw.process.alive()


def deploy_body(version_env: str, **extra: Any) -> dict[str, Any]:
    """The body `faas-cli deploy` sends for greeter (fields the gateway does not use included)."""
    return {
        "service": "greeter",
        "image": "test/greeter:1",
        "envProcess": "python index.py",
        "envVars": {"GREETING": version_env},
        "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3"},
        "annotations": {"topic": "decoded_iot_data"},
        "secrets": ["greeter-secret"],
        "limits": {"memory": "128Mi"},
        "requests": {"cpu": "50m"},
        "readOnlyRootFilesystem": False,
        **extra,
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    return wait_for(
        lambda: not pid_alive(pid), timeout, interval=0.1, message=f"process {pid} still runs"
    )


def test_deploy_needs_basic_auth(gateway: Gateway) -> None:
    assert gateway.system("POST", deploy_body("x"), auth=None).status_code == 401
    assert gateway.system("POST", deploy_body("x"), auth=("admin", "wrong")).status_code == 401
    assert gateway.invoke("greeter").status_code == 404


def test_deploy_refuses_a_function_without_a_build_folder(gateway: Gateway) -> None:
    resp = gateway.system("POST", deploy_body("x", service="unbuilt"))
    assert resp.status_code == 400
    assert "build" in resp.text
    assert gateway.describe("unbuilt").status_code == 404


def test_deploy_rejects_a_body_without_service(gateway: Gateway) -> None:
    assert gateway.system("POST", {"image": "x"}).status_code == 400
    assert (
        requests.post(
            f"{gateway.url}/system/functions", data=b"not json", auth=AUTH, timeout=10
        ).status_code
        == 400
    )


def test_post_deploys_a_new_function_from_its_build_folder(gateway: Gateway) -> None:
    resp = gateway.system("POST", deploy_body("hello"))
    assert resp.status_code in (200, 202), resp.text
    answer = gateway.invoke("greeter")
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == "v1"
    assert body["greeting"] == "hello"
    assert body["secrets"] == ["greeter-secret"]
    info = gateway.describe("greeter").json()
    assert info["labels"]["com.openfaas.scale.max"] == "3"
    assert info["annotations"] == {"topic": "decoded_iot_data"}
    assert info["availableReplicas"] == 1
    names = [
        f["name"]
        for f in requests.get(f"{gateway.url}/system/functions", auth=AUTH, timeout=10).json()
    ]
    assert sorted(names) == ["echo", "greeter"]


def test_put_replaces_the_running_function_with_the_rebuilt_handler(gateway: Gateway) -> None:
    before = gateway.invoke("greeter").json()
    assert before["version"] == "v1"
    echo_pid = gateway.invoke("echo").json()["pid"]
    gateway.write_handler("greeter", "v2")
    gateway.rebuild("greeter")
    resp = gateway.system("PUT", deploy_body("bonjour"))
    assert resp.status_code in (200, 202), resp.text
    after = gateway.invoke("greeter").json()
    assert after["version"] == "v2"
    assert after["greeting"] == "bonjour"
    assert after["pid"] != before["pid"]
    assert wait_gone(before["pid"]), "the old replica is still running"
    assert gateway.invoke("echo").json()["pid"] == echo_pid  # the rest of the stack untouched
    assert gateway.process.alive()


def test_put_keeps_the_replica_count_of_a_scaled_function(gateway: Gateway) -> None:
    resp = requests.post(
        f"{gateway.url}/system/scale-function/greeter",
        auth=AUTH,
        timeout=10,
        data=json.dumps({"serviceName": "greeter", "replicas": 2}),
    )
    assert resp.status_code == 202
    wait_for(
        lambda: gateway.describe("greeter").json()["availableReplicas"] == 2,
        timeout=60,
        interval=0.2,
        message="greeter never had 2 available replicas",
    )
    assert gateway.system("PUT", deploy_body("again")).status_code in (200, 202)
    info = gateway.describe("greeter").json()
    assert info["replicas"] == 2 and info["availableReplicas"] == 2
    pids = {gateway.invoke("greeter").json()["pid"] for _ in range(8)}
    assert len(pids) == 2


def test_delete_removes_the_function_and_its_processes(gateway: Gateway) -> None:
    pids = {gateway.invoke("greeter").json()["pid"] for _ in range(8)}
    resp = gateway.system("DELETE", {"functionName": "greeter"})
    assert resp.status_code == 202
    assert gateway.invoke("greeter").status_code == 404
    assert gateway.describe("greeter").status_code == 404
    assert all(wait_gone(pid) for pid in pids)
    assert gateway.system("DELETE", {"functionName": "greeter"}).status_code == 404
    assert gateway.system("DELETE", {"name": "greeter"}).status_code == 400
    assert gateway.invoke("echo").status_code == 200


def test_deploy_functions_module_deploys_and_removes_like_faas_cli(
    gateway: Gateway, tmp_path: Path
) -> None:
    """`make deploy-local`'s fallback where faas-cli cannot be built."""
    gateway.write_handler("greeter", "v3")
    gateway.rebuild("greeter")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "basic-auth-password").write_text(AUTH[1] + "\n")
    (tmp_path / "wrong-password").write_text("nope\n")
    env = {
        **os.environ,
        "GATEWAY_USERNAME": AUTH[0],
        "F2_SECRETS_DIR": str(secrets_dir),
        "PYTHONPATH": f"{REPO}:{REPO / 'functions'}",
    }
    env.pop("GATEWAY_PASSWORD", None)
    command = [
        sys.executable,
        "-m",
        "infra.deploy.docker.deploy_functions",
        "-f",
        str(gateway.project / "stack.yml"),
        "--gateway",
        gateway.url,
        "--filter",
        "greeter",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    body = gateway.invoke("greeter").json()
    assert body["version"] == "v3" and body["greeting"] == "hello"
    removed = subprocess.run(
        [*command, "--remove"], env=env, capture_output=True, text=True, check=False
    )
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert gateway.invoke("greeter").status_code == 404
    wrong = subprocess.run(
        [*command, "--password-file", str(tmp_path / "wrong-password")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stdout


# --- the real CLI ------------------------------------------------------------------------------


def test_faas_cli_deploy_replaces_and_remove_removes(gateway: Gateway, tmp_path: Path) -> None:
    cli = faas_cli()
    env = {**os.environ, "HOME": str(tmp_path), "OPENFAAS_URL": gateway.url}

    def run(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(cli), *args],
            cwd=gateway.project,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("login", "--gateway", gateway.url, "--username", AUTH[0], "--password-stdin", stdin=AUTH[1])
    gateway.write_handler("greeter", "cli-1")
    run("build", "--shrinkwrap", "-f", "stack.yml", "--filter", "greeter")
    run("deploy", "-f", "stack.yml", "--filter", "greeter", "--gateway", gateway.url)
    first = gateway.invoke("greeter").json()
    assert first["version"] == "cli-1" and first["greeting"] == "hello"

    gateway.write_handler("greeter", "cli-2")
    run("build", "--shrinkwrap", "-f", "stack.yml", "--filter", "greeter")
    run("deploy", "-f", "stack.yml", "--filter", "greeter", "--gateway", gateway.url)
    second = gateway.invoke("greeter").json()
    assert second["version"] == "cli-2" and second["pid"] != first["pid"]
    assert "greeter" in run("list", "--gateway", gateway.url)

    run("remove", "greeter", "--gateway", gateway.url)
    assert gateway.invoke("greeter").status_code == 404
    assert wait_gone(second["pid"])
