"""Install infra/local/pglite's npm packages when missing and run its server as a managed process.

PGlite is one in-process PostgreSQL (17, with TimescaleDB 2.23) behind pglite-socket: one
client connection at a time, no SSL (``sslmode=disable``), any password, and COPY FROM STDIN
breaks the connection. It checks TimescaleDB DDL and plain INSERTs, not performance.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import psycopg2

from f2lib.errors import ProcessError
from infra.local.ports import free_port
from infra.local.process import ManagedProcess

logger = logging.getLogger(__name__)

PGLITE_DIR = Path(__file__).resolve().parents[1] / "pglite"


def ensure_installed(directory: Path = PGLITE_DIR) -> None:
    """``npm ci`` from the lock file when node_modules is missing (a no-op otherwise)."""
    if (directory / "node_modules" / "@unni-craftsman" / "pglite" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm not found; run `make setup`")
    logger.info("installing PGlite npm packages in %s", directory)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        check=True,
        timeout=600,
    )


class PgliteServer:
    """``node server.mjs`` on 127.0.0.1:``port``, data in memory (or in ``data_dir``)."""

    def __init__(self, state_dir: Path, port: int, *, data_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.port = port
        self.data_dir = data_dir
        self.log_path = state_dir / "pglite.log"
        self.process: ManagedProcess | None = None

    def dsn(self, options: str | None = None) -> str:
        dsn = (
            f"host=127.0.0.1 port={self.port} user=postgres password=pglite "
            "dbname=postgres sslmode=disable connect_timeout=30"
        )
        return f"{dsn} options='{options}'" if options else dsn

    def start(self, timeout: float = 90.0, attempts: int = 3) -> PgliteServer:
        """Start and wait until it answers; on a port taken meanwhile, retry on a fresh one."""
        ensure_installed()
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("node not found; run `make setup`")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            argv = [node, str(PGLITE_DIR / "server.mjs"), "--port", str(self.port)]
            if self.data_dir is not None:
                argv += ["--data-dir", str(self.data_dir)]
            self.process = ManagedProcess("pglite", argv, self.log_path, cwd=PGLITE_DIR).start()
            try:
                self.process.wait_ready(self.ready, timeout=timeout, interval=0.5)
                return self
            except ProcessError as exc:
                self.process.stop(timeout=5)
                if "EADDRINUSE" not in str(exc) or attempt == attempts:
                    raise
                logger.warning("pglite port %d was taken meanwhile; retrying", self.port)
                self.port = free_port()
        raise AssertionError("unreachable")

    def ready(self) -> bool:
        try:
            conn = psycopg2.connect(self.dsn(), connect_timeout=3)
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None
