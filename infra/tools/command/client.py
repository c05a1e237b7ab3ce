"""A small client of the command function: send a command, read one, list a device's commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from f2lib.errors import CommandError

DEFAULT_TIMEOUT_MARGIN_S = 15.0


@dataclass(frozen=True)
class CommandAnswer:
    """The function's HTTP status and JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def command_status(self) -> str | None:
        value = self.body.get("status")
        return value if isinstance(value, str) else None


class CommandClient:
    """``POST/GET {gateway}/function/command`` with the caller's bearer token."""

    def __init__(
        self, gateway_url: str, token: SecretStr, session: requests.Session | None = None
    ) -> None:
        self.url = gateway_url.rstrip("/") + "/function/command"
        self._token = token
        self._session = session or requests.Session()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }

    def _answer(self, response: requests.Response) -> CommandAnswer:
        try:
            body = response.json()
        except ValueError:
            body = {"error": "not_json", "message": response.text[:200]}
        return CommandAnswer(response.status_code, body if isinstance(body, dict) else {})

    def send(
        self,
        device_id: str,
        connector: str,
        component: str,
        action: str,
        params: dict[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> CommandAnswer:
        body: dict[str, Any] = {
            "device_id": device_id,
            "connector": connector,
            "component": component,
            "action": action,
            "params": params or {},
        }
        if wait_s is not None:
            body["wait_s"] = wait_s
        timeout = (wait_s if wait_s is not None else 5.0) + DEFAULT_TIMEOUT_MARGIN_S
        try:
            response = self._session.post(
                self.url, data=json.dumps(body), headers=self._headers(), timeout=timeout
            )
        except requests.RequestException as exc:
            raise CommandError(
                f"cannot reach {self.url}: {exc}", status=0, code="no_answer"
            ) from exc
        return self._answer(response)

    def get(self, command_id: str) -> CommandAnswer:
        return self._get(f"{self.url}/{command_id}", {})

    def list(self, device_id: str, limit: int = 20, before: str | None = None) -> CommandAnswer:
        query: dict[str, str] = {"device_id": device_id, "limit": str(limit)}
        if before:
            query["before"] = before
        return self._get(self.url, query)

    def _get(self, url: str, query: dict[str, str]) -> CommandAnswer:
        try:
            response = self._session.get(url, params=query, headers=self._headers(), timeout=15)
        except requests.RequestException as exc:
            raise CommandError(f"cannot reach {url}: {exc}", status=0, code="no_answer") from exc
        return self._answer(response)
