"""The OpenFaaS gateway as the autoscaler sees it: list functions, scale one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from pydantic import SecretStr

from f2lib.errors import GatewayError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """A function as ``GET /system/functions`` lists it: replicas, labels, annotations."""

    name: str
    replicas: int
    available: int
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def statuses_from_listing(listing: Any) -> list[FunctionStatus]:
    """Parse a ``GET /system/functions`` answer (labels and annotations may be null)."""
    if not isinstance(listing, list):
        raise GatewayError("/system/functions did not answer a JSON array")
    found = []
    for entry in listing:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue

        def strings(value: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}

        def count(value: Any) -> int:
            try:
                return int(value or 0)
            except (TypeError, ValueError):
                return 0

        found.append(
            FunctionStatus(
                name=entry["name"],
                replicas=count(entry.get("replicas")),
                available=count(entry.get("availableReplicas")),
                labels=strings(entry.get("labels")),
                annotations=strings(entry.get("annotations")),
            )
        )
    return found


class GatewayClient:
    """``/system/functions`` and ``/system/scale-function/<name>`` with basic auth."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout_s
        self._session = session or requests.Session()
        self._session.auth = (username, password.get_secret_value())

    def functions(self) -> list[FunctionStatus]:
        url = f"{self.base_url}/system/functions"
        try:
            resp = self._session.get(url, timeout=self._timeout)
        except requests.RequestException as exc:
            raise GatewayError(f"GET {url} failed: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise GatewayError(f"GET {url} answered {resp.status_code}")
        try:
            return statuses_from_listing(resp.json())
        except ValueError as exc:
            raise GatewayError(f"GET {url} answered no JSON") from exc

    def scale(self, name: str, replicas: int) -> None:
        url = f"{self.base_url}/system/scale-function/{name}"
        body = {"serviceName": name, "replicas": replicas}
        try:
            resp = self._session.post(url, json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            raise GatewayError(f"POST {url} failed: {type(exc).__name__}") from exc
        if resp.status_code not in (200, 202, 204):
            raise GatewayError(f"POST {url} answered {resp.status_code}: {resp.text[:200]}")

    def close(self) -> None:
        self._session.close()
