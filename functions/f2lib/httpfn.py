"""The HTTP-function contract shared by provision and command: the request, the JSON answer.

An HTTP function turns the template's event into a :class:`Request`, routes it in a pure core
that answers a :class:`Response` or raises a typed error carrying an HTTP status and a code,
and maps both to the python3-http answer here: JSON bodies, ``Cache-Control: no-store``, and
a ``WWW-Authenticate`` challenge with every 401.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class Request:
    """What an HTTP function's core needs of a request."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Any) -> Request:
        """The template's event (method, path, headers, body, query) as a Request."""
        body = getattr(event, "body", b"")
        return cls(
            method=str(getattr(event, "method", "POST")),
            path=str(getattr(event, "path", "/") or "/"),
            headers=getattr(event, "headers", None) or {},
            body=body if isinstance(body, bytes) else str(body or "").encode(),
            query=getattr(event, "query", None) or {},
        )

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is not None:
            return value
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass(frozen=True)
class Response:
    """A core's answer: the HTTP status and the JSON body."""

    status: int
    body: dict[str, Any]


def answer(status: int, body: dict[str, Any], *, realm: str) -> dict[str, Any]:
    """The python3-http answer of a JSON body (a 401 challenges for a bearer token of ``realm``)."""
    headers = dict(JSON_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return {"statusCode": status, "body": json.dumps(body, default=str), "headers": headers}


def error(status: int, code: str, message: str, *, realm: str) -> dict[str, Any]:
    """A refusal: ``{"error": code, "message": message}``."""
    return answer(status, {"error": code, "message": message}, realm=realm)
