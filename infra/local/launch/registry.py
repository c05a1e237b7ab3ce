"""A local image registry (Debian's docker-registry) on loopback, where `faas-cli push` writes.

Docker treats registries on 127.0.0.0/8 as insecure by default, so pushes and pulls work
without TLS; nothing outside this machine can reach it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import requests

from infra.local.process import ManagedProcess, ProcessError, stop_pidfile

logger = logging.getLogger(__name__)

REGISTRY_BIN = "docker-registry"


class LocalRegistry:
    """docker-registry serving ``state_dir/data`` on 127.0.0.1:``port``."""

    def __init__(self, state_dir: Path, port: int, pid_path: Path | None = None) -> None:
        self.state_dir = state_dir
        self.port = port
        self.pid_path = pid_path or state_dir / "registry.pid"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: the prefix of the images pushed here."""
        return f"127.0.0.1:{self.port}"

    def answers(self) -> bool:
        try:
            return requests.get(f"http://{self.address}/v2/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float = 30.0) -> LocalRegistry:
        if self.answers():
            return self
        binary = shutil.which(REGISTRY_BIN) or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            raise ProcessError("docker-registry not installed (make setup installs it)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.state_dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
        )
        process = ManagedProcess(
            "registry",
            [binary, "serve", str(config)],
            self.state_dir / "registry.log",
            pid_path=self.pid_path,
        ).start()
        process.wait_ready(self.answers, timeout)
        logger.info("local registry on %s", self.address)
        return self

    def stop(self) -> None:
        stop_pidfile(self.pid_path)
