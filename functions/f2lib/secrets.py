"""OpenFaaS-style secrets: one file per secret in /var/openfaas/secrets (F2_SECRETS_DIR overrides).

A secret is a file and nothing else: there is no environment fallback, so a value never sits in
a process's environment (``ps e``, ``/proc/<pid>/environ``, crash dumps). A missing or
unreadable file is a ConfigError naming the file, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from f2lib.errors import ConfigError

DEFAULT_SECRETS_DIR = Path("/var/openfaas/secrets")
SECRETS_DIR_ENV = "F2_SECRETS_DIR"


def read_secret_file(path: Path, name: str | None = None) -> SecretStr:
    """The stripped content of the secret file ``path``; ConfigError when it cannot be read."""
    label = f"secret {name!r}" if name else "secret file"
    try:
        return SecretStr(path.read_text().strip())
    except FileNotFoundError as exc:
        raise ConfigError(f"{label} not found: no file {path}") from exc
    except OSError as exc:
        raise ConfigError(f"{label} is not readable at {path}: {exc.strerror}") from exc


class SecretStore:
    """Reads named secrets from a folder of files: ``provision-token`` is ``<dir>/provision-token``.

    The folder is ``directory`` when given, else ``$F2_SECRETS_DIR`` (looked up in ``env``,
    default the process environment), else /var/openfaas/secrets where OpenFaaS mounts them.
    """

    def __init__(self, directory: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        override = env.get(SECRETS_DIR_ENV)
        self.directory = directory or (Path(override) if override else DEFAULT_SECRETS_DIR)

    def get(self, name: str) -> SecretStr:
        """The secret ``name``; ConfigError naming its file when the file is missing."""
        return read_secret_file(self.directory / name, name)
