"""The connector's direct mode: functions from a static list, each invoked at its own URL.

Where no OpenFaaS gateway runs (functions as plain Kubernetes Deployments and Services), the
function list comes from a JSON file (``CONNECTOR_FUNCTIONS_FILE``, a ConfigMap the Helm chart
renders from stack.yml): an array of entries shaped like ``GET /system/functions`` entries
(``name``, ``annotations`` with ``topic``, ``labels``, ``replicas``) plus ``url``, where the
function serves (``http://<fn>.<namespace>.svc:8080/``). ``replicas`` bounds the connector's
concurrency for the function; the Service spreads the calls over the ready pods.

The file is read again on every listing, so an updated ConfigMap is picked up without a
restart; a file that cannot be read or parsed fails that listing (``GatewayError``) and the
connector keeps what runs, as for a gateway that does not answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests

from f2lib.errors import GatewayError
from infra.services.kit.openfaas import (
    DEFAULT_TIMEOUTS,
    FunctionStatus,
    Invocation,
    TimeoutConfig,
    invoke_url,
    parse_function,
    pooled_session,
)

logger = logging.getLogger(__name__)

URL_KEY = "url"


@dataclass(frozen=True, slots=True)
class StaticFunction:
    """One entry of the static list: the function as a listing shows it, and where it serves."""

    status: FunctionStatus
    url: str


def parse_function_list(document: Any, source: str = "function list") -> list[StaticFunction]:
    """The entries of a static function list (GatewayError naming ``source`` when malformed)."""
    if not isinstance(document, list):
        raise GatewayError(f"{source} is not a JSON array")
    entries: list[StaticFunction] = []
    seen: set[str] = set()
    for index, entry in enumerate(document):
        status = parse_function(entry)
        if status is None:
            raise GatewayError(f"{source}: entry {index} is not an object with a name")
        url = entry.get(URL_KEY)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise GatewayError(f"{source}: function {status.name} has no http(s) url")
        if urlsplit(url).username is not None or urlsplit(url).password is not None:
            raise GatewayError(f"{source}: function {status.name}: url must not carry credentials")
        if status.name in seen:
            raise GatewayError(f"{source}: function {status.name} is listed twice")
        seen.add(status.name)
        entries.append(StaticFunction(status, url))
    return entries


def load_function_list(path: Path) -> list[StaticFunction]:
    """Read and parse the static list at ``path`` (GatewayError when unreadable or malformed)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read function list {path}: {type(exc).__name__}") from exc
    return parse_function_list(document, str(path))


class StaticFunctionGateway:
    """The connector's ``FunctionGateway`` over a static list: no gateway in the path.

    ``functions()`` re-reads ``path``; ``invoke()`` POSTs the batch to the function's ``url``
    through ``session`` (default: ``pooled_session()``), with the timeouts the gateway client
    uses. A function the list does not name cannot be invoked (GatewayError, retried by the
    delivery like a gateway that does not answer).
    """

    def __init__(
        self,
        path: Path,
        *,
        timeouts: TimeoutConfig = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ) -> None:
        self.path = path
        self.timeouts = timeouts
        self._session = session if session is not None else pooled_session()
        self._urls: dict[str, str] = {}

    def functions(self) -> list[FunctionStatus]:
        entries = load_function_list(self.path)
        self._urls = {entry.status.name: entry.url for entry in entries}
        return [entry.status for entry in entries]

    def invoke(self, function: str, body: bytes, headers: Mapping[str, str]) -> Invocation:
        url = self._urls.get(function)
        if url is None:
            raise GatewayError(f"function {function} is not in {self.path}")
        return invoke_url(self._session, url, body, headers, timeouts=self.timeouts)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> StaticFunctionGateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
