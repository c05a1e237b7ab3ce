"""The connector's direct mode: the static function list, and invocations at each function's URL.

Invocations go through a requests Session with the canned transport of the OpenFaaS client's
tests mounted on it (the same seam the gateway client offers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from f2lib.errors import ConfigError, GatewayError
from f2lib.secrets import SecretStore
from infra.services.connector.config import ConnectorConfig
from infra.services.connector.static import (
    StaticFunctionGateway,
    load_function_list,
    parse_function_list,
)
from infra.services.connector.targets import targets_of
from infra.services.kit.openfaas import TimeoutConfig
from tests.unit.test_kit_openfaas import CannedTransport

DECODE = {
    "name": "decode",
    "url": "http://decode.f2pipe.svc:8080/",
    "replicas": 5,
    "labels": {"com.openfaas.scale.max": "5", "f2pipe.lag.target": "1000"},
    "annotations": {"topic": "raw_iot_data"},
}
SINK = {
    "name": "sink",
    "url": "http://sink.f2pipe.svc:8080/",
    "replicas": 3,
    "annotations": {"topic": "decoded_iot_data"},
}
PROVISION = {"name": "provision", "url": "http://provision.f2pipe.svc:8080/", "replicas": 1}


def write_list(path: Path, entries: Any) -> Path:
    path.write_text(json.dumps(entries))
    return path


def gateway_over(path: Path, transport: CannedTransport, **kwargs: Any) -> StaticFunctionGateway:
    session = requests.Session()
    session.mount("http://", transport)
    return StaticFunctionGateway(path, session=session, **kwargs)


def test_function_list__gives_the_connector_the_topic_fed_functions_with_their_replicas(
    tmp_path: Path,
) -> None:
    gateway = StaticFunctionGateway(write_list(tmp_path / "fns.json", [DECODE, SINK, PROVISION]))
    targets = targets_of(gateway.functions())
    assert [(t.name, t.topics, t.replicas) for t in targets] == [
        ("decode", ("raw_iot_data",), 5),
        ("sink", ("decoded_iot_data",), 3),
    ]
    gateway.close()


def test_invoke__posts_the_batch_to_the_functions_own_url_without_credentials(
    tmp_path: Path,
) -> None:
    transport = CannedTransport({("POST", "/"): (200, '{"records": 1}')})
    gateway = gateway_over(write_list(tmp_path / "fns.json", [DECODE, SINK]), transport)
    gateway.functions()

    answer = gateway.invoke("sink", b"[]", {"X-Topic": "decoded_iot_data"})

    assert answer.ok and answer.json() == {"records": 1}
    (sent,) = transport.sent
    assert sent.url == "http://sink.f2pipe.svc:8080/"
    assert sent.body == b"[]"
    assert sent.headers["X-Topic"] == "decoded_iot_data"
    assert "Authorization" not in sent.headers


def test_invoke__a_refusal_comes_back_as_the_functions_answer(tmp_path: Path) -> None:
    transport = CannedTransport({("POST", "/"): (400, '{"error": "bad batch"}')})
    gateway = gateway_over(write_list(tmp_path / "fns.json", [DECODE]), transport)
    gateway.functions()
    answer = gateway.invoke("decode", b"[{}]", {})
    assert answer.status == 400 and answer.refused


def test_invoke__uses_the_invoke_timeout(tmp_path: Path) -> None:
    transport = CannedTransport({("POST", "/"): (200, "ok")})
    timeouts = TimeoutConfig(connect_s=1.5, invoke_s=42.0)
    gateway = gateway_over(write_list(tmp_path / "f.json", [DECODE]), transport, timeouts=timeouts)
    gateway.functions()
    gateway.invoke("decode", b"[]", {})
    assert transport.timeouts == [(1.5, 42.0)]


def test_invoke__no_answer_is_a_gateway_error_so_the_batch_is_retried(tmp_path: Path) -> None:
    transport = CannedTransport({("POST", "/"): requests.ConnectionError("refused")})
    gateway = gateway_over(write_list(tmp_path / "fns.json", [DECODE]), transport)
    gateway.functions()
    with pytest.raises(GatewayError, match=r"decode\.f2pipe\.svc"):
        gateway.invoke("decode", b"[]", {})


def test_invoke__a_function_the_list_does_not_name_is_a_gateway_error(tmp_path: Path) -> None:
    gateway = gateway_over(write_list(tmp_path / "fns.json", [DECODE]), CannedTransport({}))
    gateway.functions()
    with pytest.raises(GatewayError, match="not in"):
        gateway.invoke("sink", b"[]", {})


def test_functions__rereads_the_file_so_a_changed_list_is_picked_up(tmp_path: Path) -> None:
    path = write_list(tmp_path / "fns.json", [DECODE])
    transport = CannedTransport({("POST", "/"): (200, "ok")})
    gateway = gateway_over(path, transport)
    assert [f.name for f in gateway.functions()] == ["decode"]
    write_list(path, [DECODE, SINK])
    assert [f.name for f in gateway.functions()] == ["decode", "sink"]
    gateway.invoke("sink", b"[]", {})
    assert transport.sent[0].url == SINK["url"]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"functions": []}, "not a JSON array"),
        (["decode"], "entry 0 is not an object with a name"),
        ([{**DECODE, "url": None}], "function decode has no http(s) url"),
        ([{**DECODE, "url": "decode:8080"}], "function decode has no http(s) url"),
        ([{**DECODE, "url": "http://u:pw@decode:8080/"}], "must not carry credentials"),
        ([DECODE, DECODE], "function decode is listed twice"),
    ],
)
def test_parse_function_list__refuses_a_malformed_list_naming_the_problem(
    document: Any, problem: str
) -> None:
    with pytest.raises(GatewayError, match=re.escape(problem)):
        parse_function_list(document)


def test_load_function_list__an_unreadable_or_broken_file_is_a_gateway_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(GatewayError, match="cannot read function list"):
        load_function_list(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(GatewayError, match="cannot read function list"):
        load_function_list(tmp_path / "broken.json")


def test_config__direct_mode_needs_no_gateway_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SecretStore(tmp_path / "no-secrets", env={})
    monkeypatch.setenv("CONNECTOR_FUNCTIONS_FILE", str(tmp_path / "fns.json"))
    direct = ConnectorConfig()
    assert direct.direct and direct.credentials(store) is None
    monkeypatch.delenv("CONNECTOR_FUNCTIONS_FILE")
    gateway_mode = ConnectorConfig()
    assert not gateway_mode.direct
    with pytest.raises(ConfigError, match="basic-auth-password"):
        gateway_mode.credentials(store)
