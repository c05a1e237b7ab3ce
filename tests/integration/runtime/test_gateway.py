"""The local gateway: OpenFaaS API subset, basic auth, replicas as processes, load balancing."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.ports import free_port, port_open
from infra.local.process import ManagedProcess
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
Gw = tuple[str, tuple[str, str]]
REPO = Path(__file__).resolve().parents[3]

ECHO_HANDLER = """
import json, os

def handle(event, context):
    if event.path == "/boom":
        raise RuntimeError("secret-ish internal detail")
    secret_dir = os.environ.get("F2_SECRETS_DIR", "")
    return {
        "statusCode": 200,
        "body": {"pid": os.getpid(), "method": event.method, "path": event.path,
                 "query": dict(event.query), "body": event.body.decode(),
                 "header": event.headers.get("X-Test"), "greeting": os.environ.get("GREETING"),
                 "secrets": sorted(os.listdir(secret_dir)) if secret_dir else []},
        "headers": {"X-Echo": "yes"},
    }
"""

STACK = """
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  echo:
    lang: python3-http-f2
    handler: ./functions/echo
    image: test/echo:1
    annotations: {topic: raw_iot_data}
    labels: {com.openfaas.scale.min: "1", com.openfaas.scale.max: "4"}
    environment: {GREETING: hello}
    secrets: [echo-secret]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("gwproj")
    shutil.copytree(REPO / "template", root / "template")
    (root / "functions" / "echo").mkdir(parents=True)
    (root / "functions" / "echo" / "handler.py").write_text(ECHO_HANDLER)
    (root / "stack.yml").write_text(STACK)
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text("admin\n")
    (secrets / "basic-auth-password").write_text("s3cret-pw\n")
    (secrets / "echo-secret").write_text("x\n")
    (secrets / "other-secret").write_text("y\n")
    build_all(StackFile.load(root / "stack.yml"), root / "build")
    port = free_port()
    proc = ManagedProcess(
        "gateway",
        [
            sys.executable,
            "-m",
            "infra.local.gateway",
            "--stack",
            str(root / "stack.yml"),
            "--build-dir",
            str(root / "build"),
            "--state-dir",
            str(root / "state"),
            "--secrets-dir",
            str(secrets),
            "--port",
            str(port),
        ],
        root / "gateway.log",
        cwd=REPO,
    ).start()
    proc.wait_ready(lambda: port_open(port), timeout=60)
    yield f"http://127.0.0.1:{port}", ("admin", "s3cret-pw")
    proc.stop()
    assert not proc.alive()


def test_invoke_passes_method_path_query_body_and_headers(gateway: Gw) -> None:
    url, _ = gateway
    resp = requests.post(
        f"{url}/function/echo/sub/path?a=1", data=b"payload", headers={"X-Test": "t"}, timeout=10
    )
    assert resp.status_code == 200
    assert resp.headers["X-Echo"] == "yes"
    body = resp.json()
    assert body["method"] == "POST"
    assert body["path"] == "/sub/path"
    assert body["query"] == {"a": "1"}
    assert body["body"] == "payload"
    assert body["header"] == "t"
    assert body["greeting"] == "hello"


def test_function_sees_only_its_own_secrets(gateway: Gw) -> None:
    url, _ = gateway
    assert requests.get(f"{url}/function/echo", timeout=10).json()["secrets"] == ["echo-secret"]


def test_handler_exception_is_500_without_its_text(gateway: Gw) -> None:
    url, _ = gateway
    resp = requests.get(f"{url}/function/echo/boom", timeout=10)
    assert resp.status_code == 500
    assert "secret-ish" not in resp.text


def test_unknown_function_is_404(gateway: Gw) -> None:
    url, _ = gateway
    assert requests.get(f"{url}/function/nope", timeout=10).status_code == 404


def test_system_routes_require_basic_auth(gateway: Gw) -> None:
    url, auth = gateway
    assert requests.get(f"{url}/system/functions", timeout=10).status_code == 401
    bad = requests.get(f"{url}/system/functions", auth=("admin", "wrong"), timeout=10)
    assert bad.status_code == 401
    resp = requests.get(f"{url}/system/functions", auth=auth, timeout=10)
    assert resp.status_code == 200
    (echo,) = resp.json()
    assert echo["name"] == "echo"
    assert echo["annotations"] == {"topic": "raw_iot_data"}
    assert echo["labels"]["com.openfaas.scale.max"] == "4"
    assert echo["replicas"] == 1
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200


def test_scale_runs_n_processes_and_balances_over_them(gateway: Gw) -> None:
    url, auth = gateway
    resp = requests.post(
        f"{url}/system/scale-function/echo",
        auth=auth,
        data=json.dumps({"serviceName": "echo", "replicas": 3}),
        timeout=10,
    )
    assert resp.status_code == 202

    def echo() -> dict[str, Any]:
        info: dict[str, Any] = requests.get(
            f"{url}/system/function/echo", auth=auth, timeout=10
        ).json()
        return info

    wait_for(lambda: echo()["availableReplicas"] == 3, timeout=60, interval=0.3)
    info = echo()
    assert info["replicas"] == 3 and info["availableReplicas"] == 3
    pids = {requests.get(f"{url}/function/echo", timeout=10).json()["pid"] for _ in range(12)}
    assert len(pids) == 3
    requests.post(
        f"{url}/system/scale-function/echo",
        auth=auth,
        data=json.dumps({"serviceName": "echo", "replicas": 1}),
        timeout=10,
    )
    wait_for(lambda: echo()["availableReplicas"] == 1, timeout=30, interval=0.3)
    pids = {requests.get(f"{url}/function/echo", timeout=10).json()["pid"] for _ in range(6)}
    assert len(pids) == 1


def test_scale_rejects_malformed_body(gateway: Gw) -> None:
    url, auth = gateway
    resp = requests.post(f"{url}/system/scale-function/echo", auth=auth, data="{}", timeout=10)
    assert resp.status_code == 400


def test_metrics_count_invocations(gateway: Gw) -> None:
    url, _ = gateway
    requests.get(f"{url}/function/echo", timeout=10)
    text = requests.get(f"{url}/metrics", timeout=10).text
    assert 'gateway_function_invocation_total{code="200",function_name="echo"}' in text
