"""OpenFaaS-style secrets: files in /var/openfaas/secrets, a directory override, env fallback."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from f2lib.errors import ConfigError

DEFAULT_SECRETS_DIR = Path("/var/openfaas/secrets")
SECRETS_DIR_ENV = "F2_SECRETS_DIR"


class SecretStore:
    """Reads named secrets from a directory of files, falling back to environment variables.

    ``provision-token`` is looked up as the file ``<dir>/provision-token`` and then as the
    environment variable ``PROVISION_TOKEN``.
    """

    def __init__(self, directory: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._env = env
        override = env.get(SECRETS_DIR_ENV)
        self.directory = directory or (Path(override) if override else DEFAULT_SECRETS_DIR)

    @staticmethod
    def env_name(name: str) -> str:
        return name.upper().replace("-", "_").replace(".", "_")

    def get(self, name: str, default: str | None = None) -> SecretStr:
        path = self.directory / name
        try:
            return SecretStr(path.read_text().strip())
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"secret {name!r} is not readable: {exc.strerror}") from exc
        value = self._env.get(self.env_name(name), default)
        if value is None:
            raise ConfigError(
                f"secret {name!r} not found in {self.directory} nor ${self.env_name(name)}"
            )
        return SecretStr(value)
