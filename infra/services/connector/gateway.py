"""The OpenFaaS gateway as the connector sees it: function discovery and function invocation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from f2lib.contracts.functions import topics_of
from f2lib.errors import GatewayError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FunctionTarget:
    """A function that asked, by its ``topic`` annotation, to be fed Kafka topics."""

    name: str
    topics: tuple[str, ...]
    replicas: int


@dataclass(frozen=True, slots=True)
class Invocation:
    """The gateway's answer to one function call."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """A 4xx that names the input as bad (408 and 429 are the gateway's, not the input's)."""
        return 400 <= self.status < 500 and self.status not in (408, 429)


def targets_from_listing(listing: Any) -> list[FunctionTarget]:
    """The functions of a ``GET /system/functions`` answer that carry a ``topic`` annotation."""
    if not isinstance(listing, list):
        raise GatewayError("/system/functions did not answer a JSON array")
    targets = []
    for entry in listing:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        annotations = entry.get("annotations")
        topics = topics_of(annotations) if isinstance(annotations, Mapping) else ()
        if not topics:
            continue
        try:
            replicas = int(entry.get("replicas") or 0)
        except (TypeError, ValueError):
            replicas = 0
        targets.append(FunctionTarget(name=entry["name"], topics=topics, replicas=replicas))
    return targets


class GatewayClient:
    """Talks to ``base_url`` through one pooled ``requests.Session``.

    Basic auth goes only to ``/system/*``; invocations carry no gateway credentials, so a
    function never sees them.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        connect_timeout_s: float = 5.0,
        invoke_timeout_s: float = 65.0,
        pool_size: int = 16,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = (username, password.get_secret_value())
        self._connect_timeout = connect_timeout_s
        self._invoke_timeout = invoke_timeout_s
        self._session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def list_functions(self) -> list[FunctionTarget]:
        url = f"{self.base_url}/system/functions"
        try:
            response = self._session.get(
                url, auth=self._auth, timeout=(self._connect_timeout, self._connect_timeout * 2)
            )
        except requests.RequestException as exc:
            raise GatewayError(f"GET {url} failed: {exc}") from exc
        if response.status_code != 200:
            raise GatewayError(f"GET {url} answered {response.status_code}")
        try:
            listing = response.json()
        except ValueError as exc:
            raise GatewayError(f"GET {url} answered a body that is not JSON") from exc
        return targets_from_listing(listing)

    def invoke(self, function: str, body: bytes, headers: Mapping[str, str]) -> Invocation:
        """POST a batch to ``/function/<name>``; GatewayError when no HTTP answer came back."""
        url = f"{self.base_url}/function/{function}"
        try:
            response = self._session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=(self._connect_timeout, self._invoke_timeout),
            )
        except requests.Timeout as exc:
            raise GatewayError(f"POST {url} timed out: {exc}") from exc
        except requests.RequestException as exc:
            raise GatewayError(f"POST {url} failed: {exc}") from exc
        return Invocation(status=response.status_code, body=response.text)

    def close(self) -> None:
        self._session.close()
