"""Debian's Mosquitto for the local runtime and tests: config, users, start, reload, stop."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from f2lib.errors import ProcessError
from infra.deploy.mosquitto.config import (
    DEFAULT_AUTOSAVE_CHANGES,
    BrokerConfig,
    InternalUser,
    TlsFiles,
    check_name,
    hash_password,
    render_config,
    render_internal_acl,
    render_password_file,
)
from infra.local.ports import port_open
from infra.local.process import ManagedProcess, log_tail, make_traversable

logger = logging.getLogger(__name__)

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
BROKER_USER = "mosquitto"
RELOAD_MARK = "Reloading config"


def mosquitto_binary(override: Path | None = None) -> Path:
    """``override`` (``F2_MOSQUITTO_BIN``) when it exists, else the installed broker (Debian
    package ``mosquitto``)."""
    found = shutil.which("mosquitto")
    for candidate in (override, *MOSQUITTO_CANDIDATES, found):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise FileNotFoundError("mosquitto not found; run `make setup` (apt-get install mosquitto)")


class MosquittoServer:
    """One Mosquitto broker whose files all live in ``state_dir``.

    Listeners (``per_listener_settings true``): ``host:port`` for internal services with a
    password file and its own ACL; optionally ``tls_port`` (mTLS, CRL, device ACL) and
    ``ws_port`` (websockets with mTLS, beside the plain listener:
    see infra/deploy/mosquitto/README.md).
    When run as root the broker runs as the ``mosquitto`` user; the files it reads are made
    readable by it, its copy of the server key is 0600 and owned by it.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        tls_port: int | None = None,
        ws_port: int | None = None,
        tls: TlsFiles | None = None,
        host: str = "127.0.0.1",
        pid_path: Path | None = None,
        run_as: str | None = BROKER_USER,
        username: str = "f2-internal",
        password: str | None = None,
        binary: Path | None = None,
        topics: Sequence[tuple[str, str]] = (("readwrite", "#"),),
        internal_hosts: Sequence[str] = (),
        autosave_changes: int | None = DEFAULT_AUTOSAVE_CHANGES,
    ) -> None:
        self.internal_hosts = tuple(internal_hosts)
        self.autosave_changes = autosave_changes
        if (tls_port is not None or ws_port is not None) and tls is None:
            raise ValueError("tls_port and ws_port need tls=TlsFiles(...)")
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.ws_port = ws_port
        self.source_tls = tls
        self.binary = binary
        self.run_as = run_as if os.geteuid() == 0 and run_as else None
        self.pid_path = pid_path or state_dir / "mosquitto.pid"
        self.config_path = state_dir / "mosquitto.conf"
        self.password_path = state_dir / "passwd"
        self.internal_acl_path = state_dir / "internal.acl"
        self.persistence_dir = state_dir / "data"
        self.log_path = state_dir / "mosquitto.log"
        self.stdout_path = state_dir / "mosquitto.stdout.log"
        self.process: ManagedProcess | None = None
        self._users: dict[str, InternalUser] = {}
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.add_user(self.username, self.password, topics)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def users(self) -> Sequence[str]:
        return tuple(self._users)

    def _owner(self) -> tuple[int, int] | None:
        if self.run_as is None:
            return None
        entry = pwd.getpwnam(self.run_as)
        return entry.pw_uid, entry.pw_gid

    def _write(self, path: Path, text: str, mode: int) -> None:
        """Write atomically, readable by the broker user, never wider than ``mode``."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        owner = self._owner()
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)

    def _prepare_tls(self) -> TlsFiles | None:
        """Copy CA and server cert/key into the state dir; ACL and CRL stay live at their source."""
        src = self.source_tls
        if src is None:
            return None
        tls_dir = self.state_dir / "tls"
        tls_dir.mkdir(exist_ok=True)
        tls_dir.chmod(0o755)
        self._write(tls_dir / "ca.crt", src.ca_cert.read_text(), 0o644)
        self._write(tls_dir / "server.crt", src.server_cert.read_text(), 0o644)
        self._write(tls_dir / "server.key", src.server_key.read_text(), 0o600)
        for live in (src.acl, src.crl):
            if not live.exists():
                raise FileNotFoundError(f"{live} is missing; run `python -m certs init` first")
        return TlsFiles(
            ca_cert=tls_dir / "ca.crt",
            server_cert=tls_dir / "server.crt",
            server_key=tls_dir / "server.key",
            crl=src.crl.resolve(),
            acl=src.acl.resolve(),
        )

    def _write_users(self) -> None:
        users = list(self._users.values())
        self._write(self.password_path, render_password_file(users), 0o600)
        self._write(self.internal_acl_path, render_internal_acl(users), 0o644)

    def add_user(
        self,
        name: str,
        password: str,
        topics: Sequence[tuple[str, str]] = (("readwrite", "#"),),
    ) -> None:
        """Add or replace an internal-listener user; reloads a running broker."""
        self._users[check_name(name)] = InternalUser(name, hash_password(password), tuple(topics))
        if self.state_dir.exists():
            self._write_users()
        if self.running():
            self.reload()

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        if self.run_as is not None:
            make_traversable(self.state_dir)
        self.persistence_dir.mkdir(exist_ok=True)
        owner = self._owner()
        if owner is not None:
            os.chown(self.persistence_dir, *owner)
        self.persistence_dir.chmod(0o700)
        tls = self._prepare_tls()
        self._write_users()
        config = BrokerConfig(
            host=self.host,
            port=self.port,
            password_file=self.password_path,
            internal_acl=self.internal_acl_path,
            persistence_dir=self.persistence_dir,
            log_file=self.log_path,
            tls_port=self.tls_port,
            ws_port=self.ws_port,
            tls=tls,
            internal_hosts=self.internal_hosts,
            autosave_changes=self.autosave_changes,
        )
        self._write(self.config_path, render_config(config), 0o644)
        return self.config_path

    def start(self, timeout: float = 30.0) -> MosquittoServer:
        self.write_config()
        self.log_path.touch()
        owner = self._owner()
        if owner is not None:
            os.chown(self.log_path, *owner)
        self.process = ManagedProcess(
            "mosquitto",
            [str(mosquitto_binary(self.binary)), "-c", str(self.config_path)],
            self.stdout_path,
            user=self.run_as,
            pid_path=self.pid_path,
        ).start()
        try:
            self.process.wait_ready(self.ready, timeout=timeout)
        except ProcessError as exc:
            self.process.stop()
            raise ProcessError(f"{exc}\nbroker log tail:\n{log_tail(self.log_path)}") from exc
        logger.info(
            "mosquitto ready port=%s tls_port=%s ws_port=%s", self.port, self.tls_port, self.ws_port
        )
        return self

    def ready(self) -> bool:
        ports = [p for p in (self.port, self.tls_port, self.ws_port) if p is not None]
        return all(port_open(p, self.host) for p in ports)

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def reload(self, *, wait: float = 5.0) -> None:
        """SIGHUP: the broker rereads password file, ACL files and CRL (new handshakes).

        Waits up to ``wait`` seconds for the broker to log that it reloaded.
        """
        if self.process is None or not self.process.alive():
            raise ProcessError("mosquitto is not running")
        before = self._reload_count()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and self._reload_count() <= before:
            time.sleep(0.05)
        logger.info("mosquitto reloaded (SIGHUP) pid=%s", self.process.pid)

    def _reload_count(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(RELOAD_MARK)
        except OSError:
            return 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None
