"""The gateway's container backend: replicas are containers of the deployed image.

A small project (the template and an echo handler) is built into real images on the session's
Docker engine, and the gateway runs them: environment from the deployment only, secrets
mounted read-only for the image's user, memory limits, scaling, a rolling replacement on PUT,
logs from the containers, and clear errors for an image that does not exist or a container
that exits at start while the other functions keep serving.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.ports import free_port
from infra.local.process import ManagedProcess
from tests.fixtures.docker import Engine
from tests.gateway_support import start_gateway, write_basic_auth
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
AUTH = ("admin", "container-pw")

ECHO_HANDLER = """
import os

def handle(event, context):
    secrets = "/var/openfaas/secrets"
    return {
        "statusCode": 200,
        "body": {
            "hostname": os.uname().nodename,
            "uid": os.getuid(),
            "version": os.environ.get("VERSION"),
            "home": os.environ.get("HOME"),
            "path": os.environ.get("PATH"),
            "leaked": os.environ.get("F2_TEST_HOST_ONLY"),
            "secret": open(os.path.join(secrets, "echo-secret")).read(),
            "writable": os.access(secrets, os.W_OK),
        },
    }
"""
BROKEN_HANDLER = "raise SystemExit('this function cannot start')\n"

STACK = """
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  echo:
    lang: python3-http-f2
    handler: ./functions/echo
    image: f2pipe-test/echo:1
    labels: {com.openfaas.scale.min: "1"}
    environment: {VERSION: "one"}
    secrets: [echo-secret]
    limits: {memory: 96Mi}
  broken:
    lang: python3-http-f2
    handler: ./functions/broken
    image: f2pipe-test/broken:1
"""


@dataclass
class Gateway:
    url: str
    docker: Engine
    process: ManagedProcess

    def system(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, f"{self.url}/system/{path}", json=body, auth=AUTH, timeout=180
        )

    def describe(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.system("GET", f"function/{name}").json()
        return answer

    def call(self, name: str = "echo") -> dict[str, Any]:
        answer = requests.get(f"{self.url}/function/{name}", timeout=30)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def containers(self, name: str) -> list[str]:
        result = self.docker.docker.run(
            "ps", "--filter", f"label=f2pipe.function={name}", "--format", "{{.Names}}"
        )
        return sorted(result.stdout.split())


def deployment(image: str, version: str) -> dict[str, Any]:
    return {
        "service": "echo",
        "image": image,
        "envVars": {"VERSION": version},
        "secrets": ["echo-secret"],
        "labels": {"com.openfaas.scale.min": "1"},
        "limits": {"memory": "96Mi"},
    }


@pytest.fixture(scope="module")
def images(docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test project, and its images (echo:1, echo:2 with the same code, broken:1)."""
    root = tmp_path_factory.mktemp("container-project")
    shutil.copytree(REPO / "template", root / "template")
    for name, code in (("echo", ECHO_HANDLER), ("broken", BROKEN_HANDLER)):
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "handler.py").write_text(code)
    (root / "stack.yml").write_text(STACK)
    contexts = build_all(StackFile.load(root / "stack.yml"), root / "build")
    builder = docker_engine.builder
    python, watchdog = builder.python_base(), builder.watchdog()
    builder.build("echo", contexts["echo"], "f2pipe-test/echo:1", python, watchdog)
    docker_engine.docker.run("tag", "f2pipe-test/echo:1", "f2pipe-test/echo:2")
    builder.build("broken", contexts["broken"], "f2pipe-test/broken:1", python, watchdog)
    return root


@pytest.fixture(scope="module")
def gateway(images: Path, docker_engine: Engine, runtime_root: Path) -> Iterator[Gateway]:
    secrets = images / "secrets"
    write_basic_auth(secrets, *AUTH)
    (secrets / "echo-secret").write_text("mounted-value")
    port = free_port()
    state = runtime_root / f"container-gateway-{port}"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"}
    proc = start_gateway(
        images,
        port,
        secrets,
        state=state,
        extra=[
            "--backend",
            "containers",
            "--docker-host",
            docker_engine.host,
            "--service-host",
            "127.0.0.1",
        ],
        env={**env, "F2_TEST_HOST_ONLY": "from-the-host"},
        timeout=180,
    )
    gw = Gateway(f"http://127.0.0.1:{port}", docker_engine, proc)
    try:
        yield gw
    finally:
        proc.stop()
        assert gw.containers("echo") == []  # the gateway removes its containers when it stops


def test_a_replica_is_a_container_of_the_image_with_the_deployments_environment_only(
    gateway: Gateway,
) -> None:
    answer = gateway.call()
    assert answer["version"] == "one"
    assert answer["home"] == "/home/app"
    assert answer["leaked"] is None
    assert "/home/app/.local/bin" in answer["path"]
    assert answer["uid"] != 0  # the image's own user
    (container,) = gateway.containers("echo")
    assert (
        answer["hostname"]
        == gateway.docker.docker.run(
            "inspect", "--format", "{{.Config.Hostname}}", container
        ).stdout.strip()
    )


def test_secrets_are_mounted_read_only_for_the_images_user(gateway: Gateway) -> None:
    answer = gateway.call()
    assert answer["secret"] == "mounted-value"
    assert answer["writable"] is False
    (container,) = gateway.containers("echo")
    mounts = json.loads(
        gateway.docker.docker.run("inspect", "--format", "{{json .Mounts}}", container).stdout
    )
    (secrets,) = [m for m in mounts if m["Destination"] == "/var/openfaas/secrets"]
    assert secrets["RW"] is False


def test_memory_limit_comes_from_the_deployment(gateway: Gateway) -> None:
    (container,) = gateway.containers("echo")
    memory = gateway.docker.docker.run(
        "inspect", "--format", "{{.HostConfig.Memory}}", container
    ).stdout.strip()
    assert int(memory) == 96 * 1024 * 1024


def test_listing_names_the_backend_the_image_and_the_watchdog(gateway: Gateway) -> None:
    echo = gateway.describe("echo")
    assert echo["image"] == "f2pipe-test/echo:1"
    assert echo["f2pipe"]["backend"] == "containers"
    assert isinstance(echo["f2pipe"]["watchdog"], bool)
    assert echo["f2pipe"]["instances"] == gateway.containers("echo")


def test_a_container_that_exits_at_start_is_an_error_in_the_listing_and_others_serve(
    gateway: Gateway,
) -> None:
    broken = gateway.describe("broken")
    assert broken["availableReplicas"] == 0
    assert "exited at start" in broken["f2pipe"]["error"]
    assert "this function cannot start" in broken["f2pipe"]["error"]
    assert requests.get(f"{gateway.url}/function/broken", timeout=30).status_code == 502
    assert gateway.call()["version"] == "one"


def test_a_deployment_of_an_image_that_does_not_exist_is_refused_and_others_serve(
    gateway: Gateway,
) -> None:
    refused = gateway.system(
        "POST", "functions", {**deployment("f2pipe-test/missing:9", "x"), "service": "ghost"}
    )
    assert refused.status_code == 400
    assert "f2pipe-test/missing:9" in refused.text and "not found" in refused.text
    assert gateway.system("GET", "function/ghost").status_code == 404
    assert gateway.call()["version"] == "one"


def test_scaling_runs_n_containers_and_balances_over_them(gateway: Gateway) -> None:
    answer = gateway.system("POST", "scale-function/echo", {"serviceName": "echo", "replicas": 2})
    assert answer.status_code == 202
    wait_for(lambda: gateway.describe("echo")["availableReplicas"] == 2)
    assert len(gateway.containers("echo")) == 2
    hosts = {gateway.call()["hostname"] for _ in range(8)}
    assert len(hosts) == 2
    gateway.system("POST", "scale-function/echo", {"serviceName": "echo", "replicas": 1})
    wait_for(lambda: len(gateway.containers("echo")) == 1)


def test_put_replaces_the_containers_rolling_and_every_call_is_answered(gateway: Gateway) -> None:
    before = gateway.containers("echo")
    answers: list[int] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            answers.append(requests.get(f"{gateway.url}/function/echo", timeout=30).status_code)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        updated = gateway.system("PUT", "functions", deployment("f2pipe-test/echo:2", "two"))
    finally:
        wait_for(lambda: len(answers) > 5)
        stop.set()
        caller.join()
    assert updated.status_code == 202, updated.text
    assert gateway.call()["version"] == "two"
    assert gateway.describe("echo")["image"] == "f2pipe-test/echo:2"
    after = gateway.containers("echo")
    assert after and not set(after) & set(before)
    assert set(answers) == {200}


def test_logs_come_from_the_containers(gateway: Gateway) -> None:
    gateway.call()
    lines = gateway.system("GET", "logs?name=echo&tail=200").text.splitlines()
    messages = [json.loads(line) for line in lines if line.strip()]
    assert any("serving function" in m["text"] for m in messages)
    assert {m["instance"] for m in messages} <= set(gateway.describe("echo")["f2pipe"]["instances"])


def test_a_killed_container_is_replaced(gateway: Gateway) -> None:
    (container,) = gateway.containers("echo")
    gateway.docker.docker.run("kill", container)
    wait_for(lambda: (names := gateway.containers("echo")) and container not in names)
    wait_for(lambda: gateway.describe("echo")["availableReplicas"] == 1)
    assert gateway.call()["version"] in ("one", "two")


def test_docker_cli_sees_only_loopback_ports(gateway: Gateway) -> None:
    (container,) = gateway.containers("echo")
    ports = subprocess.run(
        ["/usr/bin/docker", "port", container],
        env={"DOCKER_HOST": gateway.docker.host, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ports.strip() and all("127.0.0.1:" in line for line in ports.splitlines())
