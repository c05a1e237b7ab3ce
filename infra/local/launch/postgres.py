"""A PostgreSQL cluster of the project's own: initdb, start and stop it as the ``postgres`` user."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
from pathlib import Path

import psycopg2
from psycopg2 import sql

from f2lib.errors import ProcessError
from infra.local.process import ManagedProcess, make_traversable

logger = logging.getLogger(__name__)

PG_BIN_CANDIDATES = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)


def pg_bin_dir(override: Path | None = None) -> Path:
    """``override`` (``F2_PG_BIN``) when given, else the installed PostgreSQL server binaries."""
    for candidate in (override,) if override else map(Path, PG_BIN_CANDIDATES):
        if (candidate / "postgres").exists():
            return candidate
    raise FileNotFoundError("PostgreSQL server binaries not found; run `make setup`")


def timescaledb_installed(bin_dir: Path | None = None) -> bool:
    """Whether the server of ``bin_dir`` has the TimescaleDB extension (library and control file).

    Debian lays a server out as ``/usr/lib/postgresql/<major>/{bin,lib}`` with its extensions'
    control files in ``/usr/share/postgresql/<major>/extension``.
    """
    bin_dir = bin_dir or pg_bin_dir()
    major = bin_dir.parent.name
    library = bin_dir.parent / "lib" / "timescaledb.so"
    control = Path("/usr/share/postgresql") / major / "extension" / "timescaledb.control"
    return library.exists() and control.exists()


class PostgresServer:
    """One PostgreSQL cluster in ``state_dir`` listening on 127.0.0.1:``port``.

    When started as root the cluster runs as the ``postgres`` user (PostgreSQL refuses root).
    The superuser ``postgres`` has a generated password in ``state_dir/superuser.password``.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        user: str = "postgres",
        timescaledb: bool | None = None,
        bin_dir: Path | None = None,
        listen: tuple[str, ...] = ("127.0.0.1",),
        client_networks: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = state_dir
        # Addresses to listen on, and networks (CIDR) allowed in besides loopback: containers
        # reach the server on the Docker bridge address.
        self.listen = listen
        self.client_networks = client_networks
        self.bin_dir = bin_dir
        # TimescaleDB must be preloaded before CREATE EXTENSION: preload it when the server has
        # it (None), or as told (False starts a server that cannot use it, even where installed).
        self.timescaledb = (
            timescaledb_installed(pg_bin_dir(bin_dir)) if timescaledb is None else timescaledb
        )
        self.port = port
        self.data_dir = state_dir / "data"
        self.log_path = state_dir / "postgres.log"
        self.run_as = user if os.geteuid() == 0 else None
        self.process: ManagedProcess | None = None
        self._password_file = state_dir / "superuser.password"

    @property
    def password(self) -> str:
        return self._password_file.read_text().strip()

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres "
            f"password={self.password} dbname={dbname}"
        )

    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        if self.run_as is not None:
            make_traversable(self.state_dir)
        if not self._password_file.exists():
            self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self._password_file.chmod(0o600)
        pwfile = self.state_dir / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        pwfile.chmod(0o600)
        self.data_dir.mkdir(exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        try:
            init = ManagedProcess(
                "initdb",
                [
                    str(pg_bin_dir(self.bin_dir) / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                self.state_dir / "initdb.log",
                user=self.run_as,
            ).start()
            assert init.popen is not None
            if init.popen.wait(timeout=120) != 0:
                raise ProcessError(f"initdb failed; see {self.state_dir / 'initdb.log'}")
        finally:
            pwfile.unlink(missing_ok=True)
        logger.info("initialised PostgreSQL cluster in %s", self.data_dir)

    def _allow_client_networks(self) -> None:
        """Password logins from ``client_networks`` in pg_hba.conf (added once each)."""
        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        lines = [
            f"host all all {network} scram-sha-256  # f2pipe: containers"
            for network in self.client_networks
            if f" {network} " not in text
        ]
        if lines:
            hba.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")

    def start(self, *, pid_path: Path | None = None, timeout: float = 60.0) -> PostgresServer:
        self.initdb()
        self._allow_client_networks()
        socket_dir = self.state_dir / "socket"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        self.log_path.touch()
        self._chown(self.log_path)
        self.process = ManagedProcess(
            "postgres",
            [
                str(pg_bin_dir(self.bin_dir) / "postgres"),
                "-D",
                str(self.data_dir),
                "-c",
                f"listen_addresses={','.join(self.listen)}",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={socket_dir}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "synchronous_commit=on",
                "-c",
                "fsync=on",
                *(["-c", "shared_preload_libraries=timescaledb"] if self.timescaledb else []),
            ],
            self.log_path,
            user=self.run_as,
            pid_path=pid_path,
        ).start()
        self.process.wait_ready(self.ready, timeout=timeout)
        return self

    def ready(self) -> bool:
        try:
            conn = psycopg2.connect(self.dsn(), connect_timeout=2)
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: rolls back sessions, checkpoints, exits.
            import signal

            self.process.stop(timeout=30, signum=signal.SIGINT)
            self.process = None
