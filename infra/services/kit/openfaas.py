"""The OpenFaaS gateway client every f2pipe caller uses: list, deploy, scale, invoke, health.

``OpenFaaSClient`` speaks the gateway's REST API through the ``requests.Session`` it is given
(the transport seam; by default a pooled one). Basic auth goes only to ``/system/*``: a
function called through ``/function/*`` never sees the gateway's credentials. requests' errors
become ``GatewayError`` here, naming the call and the URL but never the credentials. A
``GET /system/functions`` answer is parsed once, by ``parse_listing``, for every caller.
``invoke_url`` is the same invocation without a gateway: a POST to the URL a function serves on
(its Kubernetes Service), for callers that find functions elsewhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from f2lib.contracts.functions import topics_of
from f2lib.errors import ConfigError, GatewayError

logger = logging.getLogger(__name__)

SYSTEM_PREFIX = "/system/"
DEFAULT_USERNAME = "admin"
DEFAULT_POOL_SIZE = 10
# 408 and 429 are the gateway's (or a proxy's) answer, not a verdict on the input.
NOT_REFUSALS = frozenset({408, 429})
BODY_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Seconds to wait on the gateway: to connect, and for an answer by kind of call."""

    connect_s: float = 5.0
    system_s: float = 10.0  # /system/* reads, scale calls and /healthz
    invoke_s: float = 65.0  # a function's answer through /function/<name>
    deploy_s: float = 120.0  # deploy and remove: the gateway starts or stops replicas first


DEFAULT_TIMEOUTS = TimeoutConfig()


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """One function as ``GET /system/functions`` lists it (OpenFaaS's FunctionStatus)."""

    name: str
    replicas: int = 0
    available_replicas: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    invocation_count: float = 0.0
    # What f2pipe's local gateway adds (backend, watchdog, error); empty from OpenFaaS.
    runtime: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> tuple[str, ...]:
        """The Kafka topics its ``topic`` annotation asks to be fed from (empty when none)."""
        return topics_of(self.annotations)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A function's answer through ``/function/<name>``: the HTTP status and the body."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """A 4xx that names the input as bad (408 and 429 are the gateway's, not the input's)."""
        return 400 <= self.status < 500 and self.status not in NOT_REFUSALS

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.body)


def parse_function(entry: Any) -> FunctionStatus | None:
    """One listing entry, or None when it is not an object with a name.

    Labels and annotations may be null (OpenFaaS answers ``null`` for none); counts that are
    null or not numbers are 0.
    """
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        return None
    image = entry.get("image")
    return FunctionStatus(
        name=entry["name"],
        replicas=_count(entry.get("replicas")),
        available_replicas=_count(entry.get("availableReplicas")),
        labels=_strings(entry.get("labels")),
        annotations=_strings(entry.get("annotations")),
        image=image if isinstance(image, str) else "",
        invocation_count=_number(entry.get("invocationCount")),
        runtime=entry["f2pipe"] if isinstance(entry.get("f2pipe"), Mapping) else {},
    )


def parse_listing(listing: Any) -> list[FunctionStatus]:
    """The functions of a ``GET /system/functions`` answer; entries without a name are skipped."""
    if not isinstance(listing, list):
        raise GatewayError("/system/functions did not answer a JSON array")
    return [status for status in map(parse_function, listing) if status is not None]


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def pooled_session(pool_size: int = DEFAULT_POOL_SIZE) -> requests.Session:
    """A Session keeping up to ``pool_size`` connections per host and retrying nothing itself."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class OpenFaaSClient:
    """The gateway at ``base_url``, called through ``session`` (default: ``pooled_session()``).

    ``password`` (with ``username``) is sent as basic auth to ``/system/*`` only; without one
    no credentials are sent. Give a session without ``auth`` of its own, or it would reach
    ``/function/*`` too. Calls that get no HTTP answer raise ``GatewayError`` (status None);
    ``/system/*`` calls that get an unexpected status raise it with that status; invocations
    return whatever the function answered.
    """

    def __init__(
        self,
        base_url: str,
        username: str = DEFAULT_USERNAME,
        password: SecretStr | None = None,
        *,
        timeouts: TimeoutConfig = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            raise ConfigError(
                f"gateway URL {shown} must not carry credentials: pass username and password"
            )
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self._username = username
        self._password = password
        self._session = session if session is not None else pooled_session()

    # --- /system/* ---------------------------------------------------------------------------
    def functions(self) -> list[FunctionStatus]:
        """Every deployed function (``GET /system/functions``)."""
        response = self._send("GET", "/system/functions", read_s=self.timeouts.system_s)
        return parse_listing(self._json(self._expect(response, 200)))

    def function(self, name: str) -> FunctionStatus | None:
        """One function (``GET /system/function/<name>``), None when the gateway has none."""
        response = self._send("GET", f"/system/function/{name}", read_s=self.timeouts.system_s)
        if response.status_code == 404:
            return None
        status = parse_function(self._json(self._expect(response, 200)))
        if status is None:
            raise GatewayError(f"{_call(response)} did not answer a function object")
        return status

    def deploy(self, spec: Mapping[str, Any]) -> int:
        """Update the function ``spec["service"]``, or create it when the gateway knows none.

        ``PUT /system/functions``, then ``POST`` when that answered 404 (as `faas-cli deploy`
        does); returns the 2xx status that accepted it.
        """
        body = dict(spec)
        response = self._send("PUT", "/system/functions", json=body, read_s=self.timeouts.deploy_s)
        if response.status_code == 404:
            response = self._send(
                "POST", "/system/functions", json=body, read_s=self.timeouts.deploy_s
            )
        return self._accepted(response)

    def delete(self, name: str) -> int:
        """Remove the function (``DELETE /system/functions``); returns the 2xx status."""
        response = self._send(
            "DELETE",
            "/system/functions",
            json={"functionName": name},
            read_s=self.timeouts.deploy_s,
        )
        return self._accepted(response)

    def scale(self, name: str, replicas: int) -> None:
        """Ask for ``replicas`` replicas (``POST /system/scale-function/<name>``)."""
        response = self._send(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "replicas": replicas},
            read_s=self.timeouts.system_s,
        )
        self._accepted(response)

    def healthz(self) -> None:
        """Return when ``GET /healthz`` answers 200; GatewayError otherwise."""
        self._expect(self._send("GET", "/healthz", read_s=self.timeouts.system_s), 200)

    # --- /function/* -------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        path: str = "",
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Invocation:
        """POST ``body`` to ``/function/<function>[/<path>]``, without gateway credentials.

        Whatever the function answered comes back as an Invocation; GatewayError only when no
        answer came back (connection refused, timeout after ``timeout_s`` or ``invoke_s``).
        """
        target = f"/function/{function}" + (f"/{path.lstrip('/')}" if path else "")
        return invoke_url(
            self._session,
            self.base_url + target,
            body,
            headers,
            params=params,
            timeouts=self.timeouts,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OpenFaaSClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the boundary ------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, read_s: float, **kwargs: Any) -> requests.Response:
        auth = None
        if path.startswith(SYSTEM_PREFIX) and self._password is not None:
            auth = (self._username, self._password.get_secret_value())
        return _request(
            self._session,
            method,
            self.base_url + path,
            auth=auth,
            timeout=(self.timeouts.connect_s, read_s),
            **kwargs,
        )

    @staticmethod
    def _expect(response: requests.Response, status: int) -> requests.Response:
        if response.status_code != status:
            raise GatewayError(_answered(response), status=response.status_code)
        return response

    @staticmethod
    def _accepted(response: requests.Response) -> int:
        if not 200 <= response.status_code < 300:
            raise GatewayError(_answered(response), status=response.status_code)
        return int(response.status_code)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayError(f"{_call(response)} answered a body that is not JSON") from exc


def invoke_url(
    session: requests.Session,
    url: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    params: Mapping[str, str] | None = None,
    timeouts: TimeoutConfig = DEFAULT_TIMEOUTS,
    timeout_s: float | None = None,
) -> Invocation:
    """POST ``body`` to a function serving at ``url``, with no gateway and no credentials.

    The same contract as ``OpenFaaSClient.invoke``: whatever the function answered comes back
    as an Invocation; GatewayError only when no answer came back.
    """
    response = _request(
        session,
        "POST",
        url,
        data=body,
        headers=dict(headers or {}),
        params=dict(params) if params else None,
        timeout=(timeouts.connect_s, timeouts.invoke_s if timeout_s is None else timeout_s),
    )
    return Invocation(status=response.status_code, body=response.text)


def _request(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One HTTP call, requests' errors mapped to GatewayError (the boundary, for both paths)."""
    try:
        return session.request(method, url, **kwargs)
    except requests.Timeout as exc:
        raise GatewayError(f"{method} {url} timed out ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise GatewayError(f"{method} {url} failed: {type(exc).__name__}") from exc


def _call(response: requests.Response) -> str:
    return f"{response.request.method} {response.url}"


def _answered(response: requests.Response) -> str:
    excerpt = response.text[:BODY_EXCERPT].strip()
    return f"{_call(response)} answered {response.status_code}" + (
        f": {excerpt}" if excerpt else ""
    )
