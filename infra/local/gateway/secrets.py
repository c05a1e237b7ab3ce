"""``/system/secrets``: the runtime's secrets folder as OpenFaaS's secrets API manages it.

Each secret is a file (0600) in the folder the functions' secrets are copied from; a value is
never logged nor answered. Names follow Kubernetes' rules, as OpenFaaS requires.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from f2lib.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_SECRET_BYTES = 1024 * 1024


class SecretsFolder:
    """Create, list, update and delete the secret files of ``directory``."""

    def __init__(self, directory: Path, on_change: Callable[[str], None] = lambda _: None) -> None:
        self.directory = directory
        self._on_change = on_change

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(
            p.name for p in self.directory.iterdir() if p.is_file() and _NAME.match(p.name)
        )

    @staticmethod
    def parse(body: Mapping[str, Any]) -> tuple[str, bytes | None]:
        """The name and value of a secrets request (``value`` text or ``rawValue`` base64)."""
        name = str(body.get("name") or "")
        if not _NAME.match(name):
            raise ConfigError("secret name must be lowercase letters, digits, '-' or '.'")
        if body.get("value"):
            value: bytes | None = str(body["value"]).encode("utf-8")
        elif body.get("rawValue"):
            try:
                value = base64.b64decode(str(body["rawValue"]), validate=True)
            except ValueError as exc:
                raise ConfigError("rawValue must be base64") from exc
        else:
            value = None
        if value is not None and len(value) > MAX_SECRET_BYTES:
            raise ConfigError(f"secret larger than {MAX_SECRET_BYTES} bytes")
        return name, value

    def exists(self, name: str) -> bool:
        return (self.directory / name).is_file()

    def write(self, name: str, value: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.directory / f".{name}.new"
        staging.unlink(missing_ok=True)
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        staging.replace(self.directory / name)
        self._on_change(name)

    def delete(self, name: str) -> bool:
        path = self.directory / name
        if not path.is_file():
            return False
        path.unlink()
        self._on_change(name)
        return True
