"""The OpenFaaS client over a fake transport: auth scope, listing parse, calls, error mapping.

The transport is a requests adapter mounted on a real Session that answers canned responses
and records every request it was sent (the seam ``OpenFaaSClient(session=...)`` offers).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter

from f2lib.errors import ConfigError, GatewayError
from infra.local.ports import free_port
from infra.services.kit.openfaas import (
    FunctionStatus,
    Invocation,
    OpenFaaSClient,
    TimeoutConfig,
    parse_listing,
    pooled_session,
)

BASE = "http://gateway.test:8080"
USER, PASSWORD = "admin", "s3cret-gateway-pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

Answer = tuple[int, Any] | Exception


class CannedTransport(BaseAdapter):
    """Answers each request from ``answers[(method, path)]`` (a list is used up in order)."""

    def __init__(self, answers: Mapping[tuple[str, str], Answer | list[Answer]]) -> None:
        super().__init__()
        self.answers = {key: list(v) if isinstance(v, list) else [v] for key, v in answers.items()}
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        self.sent.append(request)
        self.timeouts.append(timeout)
        path = (request.path_url or "").split("?")[0]
        queue = self.answers.get((str(request.method), path))
        if not queue:
            answer: Answer = (404, f"no route {request.method} {path}\n")
        else:
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else _encode(body)
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    def only(self, method: str, path: str) -> requests.PreparedRequest:
        (request,) = [r for r in self.sent if r.method == method and r.path_url.startswith(path)]
        return request


def _encode(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def client_over(
    transport: CannedTransport, password: str | None = PASSWORD, **kwargs: Any
) -> OpenFaaSClient:
    session = requests.Session()
    session.mount("http://", transport)
    secret = SecretStr(password) if password is not None else None
    return OpenFaaSClient(BASE, USER, secret, session=session, **kwargs)


LISTING = [
    {
        "name": "decode",
        "image": "registry/f2-decode:1",
        "replicas": 2,
        "availableReplicas": 1,
        "labels": {"com.openfaas.scale.max": "8"},
        "annotations": {"topic": "raw_iot_data"},
        "invocationCount": 42,
    },
    {"name": "provision", "replicas": 1, "availableReplicas": None, "labels": None},
]


def test_system_calls__carry_basic_auth_and_function_calls_never_do() -> None:
    transport = CannedTransport({
        ("GET", "/system/functions"): (200, LISTING),
        ("POST", "/system/scale-function/decode"): (202, ""),
        ("POST", "/function/decode"): (200, "ok"),
        ("POST", "/function/provision/crl"): (200, "{}"),
        ("GET", "/healthz"): (200, "OK"),
    })  # fmt: skip
    client = client_over(transport)

    client.functions()
    client.scale("decode", 3)
    client.invoke("decode", b"[]", {"Content-Type": "application/json"})
    client.invoke("provision", b"{}", {"Authorization": "Bearer fn-token"}, path="crl")
    client.healthz()

    assert transport.only("GET", "/system/functions").headers["Authorization"] == BASIC
    assert transport.only("POST", "/system/scale").headers["Authorization"] == BASIC
    assert "Authorization" not in transport.only("POST", "/function/decode").headers
    function_auth = transport.only("POST", "/function/provision/crl").headers["Authorization"]
    assert function_auth == "Bearer fn-token", "the function's own token passes untouched"
    assert "Authorization" not in transport.only("GET", "/healthz").headers


def test_without_a_password__no_credentials_are_sent_anywhere() -> None:
    transport = CannedTransport({("GET", "/system/functions"): (200, [])})
    client_over(transport, password=None).functions()
    assert "Authorization" not in transport.only("GET", "/system/functions").headers


def test_functions__parse_every_field_and_null_labels_and_counts() -> None:
    transport = CannedTransport({("GET", "/system/functions"): (200, LISTING)})
    decode, provision = client_over(transport).functions()

    assert decode == FunctionStatus(
        name="decode",
        replicas=2,
        available_replicas=1,
        labels={"com.openfaas.scale.max": "8"},
        annotations={"topic": "raw_iot_data"},
        image="registry/f2-decode:1",
        invocation_count=42.0,
    )
    assert decode.topics == ("raw_iot_data",)
    assert provision == FunctionStatus("provision", 1, 0, {}, {})
    assert provision.topics == ()


def test_parse_listing__skips_entries_without_a_name_and_reads_odd_counts_as_zero() -> None:
    listing = [
        "garbage",
        {"replicas": 1},
        {"name": 7},
        {"name": "odd", "replicas": "many", "availableReplicas": [], "invocationCount": "x"},
        {"name": "stringly", "replicas": "3", "labels": {"n": 5}, "image": None},
    ]
    odd, stringly = parse_listing(listing)
    assert odd == FunctionStatus("odd")
    assert stringly == FunctionStatus("stringly", replicas=3, labels={"n": "5"})


def test_parse_listing__not_an_array_is_a_gateway_error() -> None:
    with pytest.raises(GatewayError, match="did not answer a JSON array"):
        parse_listing({"name": "fn"})


def test_functions__an_unexpected_status_is_a_gateway_error_carrying_it() -> None:
    transport = CannedTransport({("GET", "/system/functions"): (401, "Unauthorized\n")})
    with pytest.raises(
        GatewayError, match=r"GET http://gateway.test:8080/system/functions answered 401"
    ) as caught:
        client_over(transport).functions()
    assert caught.value.status == 401


def test_functions__a_body_that_is_not_json_is_a_gateway_error() -> None:
    transport = CannedTransport({("GET", "/system/functions"): (200, "<html>proxy</html>")})
    with pytest.raises(GatewayError, match="not JSON"):
        client_over(transport).functions()


def test_function__answers_none_for_an_unknown_name_and_parses_a_known_one() -> None:
    transport = CannedTransport({
        ("GET", "/system/function/decode"): (200, LISTING[0]),
        ("GET", "/system/function/nope"): (404, "function nope not found\n"),
    })  # fmt: skip
    client = client_over(transport)
    found = client.function("decode")
    assert found is not None and found.available_replicas == 1
    assert client.function("nope") is None


def test_deploy__updates_and_creates_when_the_gateway_knows_no_such_function() -> None:
    spec = {"service": "greeter", "image": "greeter:1", "labels": {}, "annotations": {}}
    transport = CannedTransport({
        ("PUT", "/system/functions"): (404, "not found\n"),
        ("POST", "/system/functions"): (200, ""),
    })  # fmt: skip

    assert client_over(transport).deploy(spec) == 200

    assert [r.method for r in transport.sent] == ["PUT", "POST"]
    assert all(json.loads(r.body or b"") == spec for r in transport.sent)
    assert all(r.headers["Authorization"] == BASIC for r in transport.sent)


def test_deploy__an_update_the_gateway_accepts_sends_no_create() -> None:
    transport = CannedTransport({("PUT", "/system/functions"): (202, "")})
    assert client_over(transport).deploy({"service": "greeter", "image": "g:2"}) == 202
    assert [r.method for r in transport.sent] == ["PUT"]


def test_deploy__a_refusal_is_a_gateway_error_with_status_and_the_gateways_reason() -> None:
    transport = CannedTransport({("PUT", "/system/functions"): (400, "service is required\n")})
    with pytest.raises(GatewayError, match="answered 400: service is required") as caught:
        client_over(transport).deploy({"image": "x"})
    assert caught.value.status == 400


def test_delete__names_the_function_in_the_body() -> None:
    transport = CannedTransport({("DELETE", "/system/functions"): (202, "")})
    assert client_over(transport).delete("greeter") == 202
    assert json.loads(transport.sent[0].body or b"") == {"functionName": "greeter"}


def test_scale__posts_service_name_and_replicas_and_raises_on_refusal() -> None:
    transport = CannedTransport({
        ("POST", "/system/scale-function/decode"): [(202, ""), (404, "function decode not found\n")],
    })  # fmt: skip
    client = client_over(transport)
    client.scale("decode", 4)
    assert json.loads(transport.sent[0].body or b"") == {"serviceName": "decode", "replicas": 4}
    with pytest.raises(GatewayError, match="answered 404: function decode not found"):
        client.scale("decode", 5)


@pytest.mark.parametrize(
    ("status", "ok", "refused"),
    [(200, True, False), (202, True, False), (422, False, True), (400, False, True),
     (408, False, False), (429, False, False), (500, False, False), (502, False, False)],
)  # fmt: skip
def test_invoke__returns_any_answer_and_refused_means_4xx_but_408_and_429(
    status: int, ok: bool, refused: bool
) -> None:
    transport = CannedTransport({("POST", "/function/decode"): (status, "answer")})
    answer = client_over(transport).invoke("decode", b"[]")
    assert answer == Invocation(status, "answer")
    assert (answer.ok, answer.refused) == (ok, refused)


def test_invoke__sends_body_headers_path_params_and_its_timeout() -> None:
    transport = CannedTransport({("POST", "/function/provision/crl"): (200, '{"crl": "fresh"}')})
    client = client_over(transport, timeouts=TimeoutConfig(connect_s=2.0, invoke_s=9.0))

    answer = client.invoke(
        "provision", b"{}", {"X-Call": "1"}, path="crl", params={"force": "1"}, timeout_s=60.0
    )
    client.invoke("provision", path="/crl")

    first, second = transport.sent
    assert first.url == f"{BASE}/function/provision/crl?force=1"
    assert first.body == b"{}" and first.headers["X-Call"] == "1"
    assert second.url == f"{BASE}/function/provision/crl"
    assert transport.timeouts == [(2.0, 60.0), (2.0, 9.0)]
    assert answer.json() == {"crl": "fresh"}


def test_system_calls__use_the_configured_timeouts() -> None:
    transport = CannedTransport({
        ("GET", "/system/functions"): (200, []),
        ("PUT", "/system/functions"): (202, ""),
    })  # fmt: skip
    timeouts = TimeoutConfig(connect_s=1.0, system_s=3.0, deploy_s=7.0)
    client = client_over(transport, timeouts=timeouts)
    client.functions()
    client.deploy({"service": "x"})
    assert transport.timeouts == [(1.0, 3.0), (1.0, 7.0)]


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (
            requests.ConnectTimeout("connect timeout"),
            r"POST .*/function/decode timed out \(ConnectTimeout\)",
        ),
        (
            requests.ReadTimeout("read timeout"),
            r"POST .*/function/decode timed out \(ReadTimeout\)",
        ),
        (requests.ConnectionError("refused"), r"POST .*/function/decode failed: ConnectionError"),
        (requests.exceptions.ChunkedEncodingError("cut"), r"failed: ChunkedEncodingError"),
    ],
)
def test_transport_errors__become_gateway_errors_from_the_cause(
    raised: requests.RequestException, message: str
) -> None:
    transport = CannedTransport({("POST", "/function/decode"): raised})
    with pytest.raises(GatewayError, match=message) as caught:
        client_over(transport).invoke("decode", b"[]")
    assert caught.value.__cause__ is raised
    assert caught.value.status is None


def test_an_unreachable_gateway__is_a_gateway_error_over_the_default_session() -> None:
    client = OpenFaaSClient(f"http://127.0.0.1:{free_port()}", USER, SecretStr(PASSWORD))
    with client, pytest.raises(GatewayError, match=r"GET http://127\.0\.0\.1:\d+/healthz failed"):
        client.healthz()


def test_error_messages__never_carry_the_credentials() -> None:
    leaky = requests.ConnectionError(f"proxy said: Authorization: {BASIC} ({PASSWORD})")
    transport = CannedTransport({
        ("GET", "/system/functions"): [leaky, requests.ReadTimeout(PASSWORD), (401, ""), (200, "x")],
        ("POST", "/system/scale-function/decode"): (500, "internal"),
        ("GET", "/healthz"): (503, ""),
    })  # fmt: skip
    client = client_over(transport)
    calls: list[Callable[[], object]] = [client.functions] * 4
    calls += [lambda: client.scale("decode", 2), client.healthz]
    messages = []
    for call in calls:
        with pytest.raises(GatewayError) as caught:
            call()
        messages.append(str(caught.value))
    assert len(set(messages)) == len(calls)
    for message in messages:
        assert PASSWORD not in message and BASIC.split()[1] not in message, message


def test_a_base_url_with_credentials__is_refused_without_echoing_them() -> None:
    with pytest.raises(
        ConfigError, match=r"gateway URL http://gateway.test:8080 must not"
    ) as caught:
        OpenFaaSClient(f"http://{USER}:{PASSWORD}@gateway.test:8080")
    assert PASSWORD not in str(caught.value)


def test_the_client__holds_the_password_only_as_a_secret() -> None:
    client = OpenFaaSClient(BASE, USER, SecretStr(PASSWORD))
    assert PASSWORD not in repr(vars(client))


def test_pooled_session__keeps_the_asked_number_of_connections_and_retries_nothing() -> None:
    adapter = pooled_session(32).get_adapter("http://gateway.test")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter._pool_maxsize == 32  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0
