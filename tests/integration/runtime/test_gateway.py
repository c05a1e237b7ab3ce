"""The local gateway: OpenFaaS API subset, basic auth, replicas as processes, load balancing."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.ports import free_port
from tests.gateway_support import start_gateway, write_basic_auth
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
                 "secrets": sorted(os.listdir(secret_dir)) if secret_dir else [],
                 "secrets_dir": secret_dir},
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
    write_basic_auth(secrets, "admin", "s3cret-pw")
    (secrets / "echo-secret").write_text("x\n")
    (secrets / "other-secret").write_text("y\n")
    build_all(StackFile.load(root / "stack.yml"), root / "build")
    port = free_port()
    proc = start_gateway(root, port, secrets)
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


# --- the rest of the OpenFaaS API, as faas-cli calls it ----------------------------------------


def test_system_info_names_the_provider_and_its_backend(gateway: Gw) -> None:
    url, auth = gateway
    info = requests.get(f"{url}/system/info", auth=auth, timeout=10).json()
    assert info["provider"]["provider"] == "f2pipe-local"
    assert info["provider"]["orchestration"] == "processes"
    assert info["version"]["release"]
    assert info["arch"]


def test_namespaces_list_the_function_namespace_and_name_dot_namespace_invokes(gateway: Gw) -> None:
    url, auth = gateway
    assert requests.get(f"{url}/system/namespaces", auth=auth, timeout=10).json() == ["openfaas-fn"]
    assert requests.get(f"{url}/function/echo.openfaas-fn", timeout=10).status_code == 200
    assert requests.get(f"{url}/function/echo.other-ns", timeout=10).status_code == 404
    listed = requests.get(
        f"{url}/system/functions", params={"namespace": "other-ns"}, auth=auth, timeout=10
    ).json()
    assert listed == []


def test_listing_counts_invocations(gateway: Gw) -> None:
    url, auth = gateway
    before = requests.get(f"{url}/system/function/echo", auth=auth, timeout=10).json()
    for _ in range(3):
        assert requests.get(f"{url}/function/echo", timeout=10).status_code == 200
    after = requests.get(f"{url}/system/function/echo", auth=auth, timeout=10).json()
    assert after["invocationCount"] == before["invocationCount"] + 3


def test_secrets_are_created_listed_updated_and_deleted_and_values_never_answered(
    gateway: Gw,
) -> None:
    url, auth = gateway
    api = f"{url}/system/secrets"
    created = requests.post(
        api, json={"name": "api-secret", "value": "v1-hidden"}, auth=auth, timeout=10
    )
    assert created.status_code == 201
    again = requests.post(api, json={"name": "api-secret", "value": "x"}, auth=auth, timeout=10)
    assert again.status_code == 409
    listing = requests.get(api, auth=auth, timeout=10)
    assert {"name": "api-secret", "namespace": "openfaas-fn"} in listing.json()
    assert "v1-hidden" not in listing.text
    assert requests.put(api, json={"name": "api-secret", "value": "v2"}, auth=auth, timeout=10).ok
    missing = requests.put(api, json={"name": "nope", "value": "v"}, auth=auth, timeout=10)
    assert missing.status_code == 404
    bad = requests.post(api, json={"name": "Bad_Name", "value": "v"}, auth=auth, timeout=10)
    assert bad.status_code == 400
    assert requests.delete(api, json={"name": "api-secret"}, auth=auth, timeout=10).ok
    assert "api-secret" not in {s["name"] for s in requests.get(api, auth=auth, timeout=10).json()}
    assert requests.get(api, timeout=10).status_code == 401


def test_updating_a_secret_reaches_the_functions_that_name_it(gateway: Gw) -> None:
    url, auth = gateway
    api = f"{url}/system/secrets"
    assert requests.put(
        api, json={"name": "echo-secret", "value": "rotated"}, auth=auth, timeout=10
    ).ok
    state = Path(requests.get(f"{url}/function/echo", timeout=10).json()["secrets_dir"])
    assert (state / "echo-secret").read_text() == "rotated"


def test_logs_are_json_lines_of_the_replicas_and_follow_streams_new_lines(gateway: Gw) -> None:
    url, auth = gateway
    assert requests.get(f"{url}/function/echo/boom", timeout=10).status_code == 500
    lines = requests.get(
        f"{url}/system/logs", params={"name": "echo", "tail": "50"}, auth=auth, timeout=10
    ).text.splitlines()
    messages = [json.loads(line) for line in lines]
    assert messages and all(
        m["name"] == "echo" and m["namespace"] == "openfaas-fn" for m in messages
    )
    assert all({"instance", "timestamp", "text"} <= set(m) for m in messages)
    assert any("handler raised" in m["text"] for m in messages)
    with requests.get(
        f"{url}/system/logs",
        params={"name": "echo", "tail": "0", "follow": "true"},
        auth=auth,
        stream=True,
        timeout=10,
    ) as follow:
        assert follow.status_code == 200
        requests.get(f"{url}/function/echo/boom", timeout=10)
        seen = []
        for raw in follow.iter_lines():
            if not raw.strip():
                continue
            seen.append(json.loads(raw)["text"])
            if any("handler raised" in text for text in seen):
                break
    assert any("handler raised" in text for text in seen)
    assert (
        requests.get(
            f"{url}/system/logs", params={"name": "nope"}, auth=auth, timeout=10
        ).status_code
        == 404
    )


def test_async_call_answers_202_with_a_call_id_and_posts_the_result_to_the_callback(
    gateway: Gw,
) -> None:
    url, _ = gateway
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        resp = requests.post(
            f"{url}/async-function/echo/later",
            data=b"queued",
            headers={"X-Callback-Url": f"http://127.0.0.1:{server.server_address[1]}/done"},
            timeout=10,
        )
        assert resp.status_code == 202
        call_id = resp.headers["X-Call-Id"]
        assert arrived.wait(30)
    finally:
        server.shutdown()
    headers, body = received[0]
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "echo"
    answer = json.loads(body)
    assert answer["path"] == "/later" and answer["body"] == "queued"
    assert requests.post(f"{url}/async-function/nope", timeout=10).status_code == 404


def test_update_of_an_unknown_function_is_404_so_that_faas_cli_creates_it(gateway: Gw) -> None:
    url, auth = gateway
    body = {"service": "not-deployed", "image": "test/x:1"}
    resp = requests.put(f"{url}/system/functions", json=body, auth=auth, timeout=10)
    assert resp.status_code == 404
