"""The callers of the command API: named bearer tokens from the ``command-token`` secret.

The secret is either lines ``<name>:<token>`` (blank lines and ``#`` comments ignored) or a
JSON object ``{"<name>": "<token>"}``. A caller presenting a token is known by its name, which
the audit trail records as ``requested_by``. Names are 1-64 characters of letters, digits and
``_ . @ -``; tokens at least 16 characters; neither may repeat.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from f2lib.errors import CommandError, ConfigError

MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class CallerTokens:
    """Token -> caller name, compared in constant time."""

    tokens: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, text: str) -> CallerTokens:
        """Read the secret's text; raises ConfigError (never quoting a token) when it is invalid."""
        stripped = text.strip()
        pairs: list[tuple[str, str]] = []
        if stripped.startswith("{"):
            try:
                loaded = json.loads(stripped)
            except ValueError as exc:
                raise ConfigError("command-token is not a valid JSON object") from exc
            if not isinstance(loaded, Mapping) or not all(
                isinstance(v, str) for v in loaded.values()
            ):
                raise ConfigError("command-token JSON must map names to token strings")
            pairs = [(str(k), v) for k, v in loaded.items()]
        else:
            for number, line in enumerate(stripped.splitlines(), start=1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, sep, token = line.partition(":")
                if not sep:
                    raise ConfigError(f"command-token line {number} is not <name>:<token>")
                pairs.append((name.strip(), token.strip()))
        if not pairs:
            raise ConfigError("command-token names no caller")
        names: set[str] = set()
        seen: set[str] = set()
        for name, token in pairs:
            if not _NAME.match(name):
                raise ConfigError(f"command-token caller name {name!r} is not valid")
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"command-token of {name} is shorter than {MIN_TOKEN_CHARS}")
            if name in names or token in seen:
                raise ConfigError(f"command-token repeats the caller {name} or its token")
            names.add(name)
            seen.add(token)
        return cls(tuple((name, token.encode()) for name, token in pairs))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.tokens)

    def caller(self, authorization: str | None) -> str:
        """The name behind an ``Authorization: Bearer <token>`` header; CommandError 401 else."""
        if not authorization:
            raise CommandError(
                "Authorization: Bearer <token> is required", status=401, code="missing_token"
            )
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise CommandError(
                "Authorization must be 'Bearer <token>'", status=401, code="invalid_authorization"
            )
        offered = presented.strip().encode()
        found: str | None = None
        for name, token in self.tokens:  # every entry is compared: no early exit on a match
            if hmac.compare_digest(offered, token):
                found = name
        if found is None:
            raise CommandError("the bearer token is not valid", status=401, code="invalid_token")
        return found
