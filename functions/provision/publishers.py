"""Registry publishers: a directory beside the broker (atomic writes, SIGHUP) or S3 (boto3).

Filesystem layout (relative names are the same as S3 keys under the prefix)::

    devices.acl  crl.pem  ca.crt  registry.json  issued/<device_id>/<serial>.crt

S3 adds ``manifest.json`` (written last: ``{"version", "generated_at", "files": {name: sha256}}``),
which the sync agent beside Mosquitto (``python -m infra.services.aclsync``) polls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509

from f2lib.errors import ConfigError, RegistryError
from f2lib.secrets import SecretStore

from .registry import RegistryBundle, validate_file

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_FILE = ".registry.lock"


def safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RegistryError(f"unsafe registry file name {name!r}")
    return path


class PidFileReloader:
    """Sends SIGHUP to the process whose pid is in ``pid_file`` (the broker)."""

    def __init__(self, pid_file: Path | None) -> None:
        self.pid_file = pid_file

    def __call__(self) -> bool:
        if self.pid_file is None:
            return False
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            logger.warning("broker pid file %s missing or unreadable; not reloaded", self.pid_file)
            return False
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            logger.warning("broker pid %d from %s is not running; not reloaded", pid, self.pid_file)
            return False
        except PermissionError as exc:
            raise RegistryError(f"cannot signal broker pid {pid}: permission denied") from exc
        logger.info("broker pid %d reloaded (SIGHUP)", pid)
        return True


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    validate: Callable[[bytes], None] | None = None,
) -> bool:
    """Write ``data`` to a temp file, validate what landed, fsync, rename. False if unchanged."""
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if validate is not None:
            validate(tmp.read_bytes())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True


class FilesystemPublisher:
    """Writes the registry into ``directory`` (files 0644, readable by the broker) and reloads."""

    def __init__(
        self,
        directory: Path,
        ca_certificate: x509.Certificate,
        reload: Callable[[], bool] = lambda: False,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.directory = directory
        self.ca_certificate = ca_certificate
        self.reload = reload
        self.clock = clock

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def publish(self, bundle: RegistryBundle) -> None:
        """Validate every file first (all or nothing), then write each atomically and reload."""
        now = self.clock()
        for name, data in bundle.files.items():
            safe_relative(name)
            validate_file(name, data, self.ca_certificate, now)
        changed = False
        with self._flock():
            for name, data in bundle.files.items():
                relative = safe_relative(name)
                changed |= write_atomic(
                    self.directory.joinpath(*relative.parts),
                    data,
                    validate=lambda written, n=name: validate_file(  # type: ignore[misc]
                        n, written, self.ca_certificate, now
                    ),
                )
            if changed:
                self.reload()

    def read(self, name: str) -> bytes | None:
        try:
            return self.directory.joinpath(*safe_relative(name).parts).read_bytes()
        except FileNotFoundError:
            return None


def s3_client(endpoint_url: str | None, region: str | None, secrets: SecretStore) -> Any:
    """A boto3 S3 client: keys from the secrets ``s3-access-key-id`` / ``s3-secret-access-key``
    when both are there, else boto3's default credential chain."""
    import boto3

    credentials: dict[str, str] = {}
    try:
        credentials = {
            "aws_access_key_id": secrets.get("s3-access-key-id").get_secret_value(),
            "aws_secret_access_key": secrets.get("s3-secret-access-key").get_secret_value(),
        }
    except ConfigError:
        logger.info("no s3-access-key-id/s3-secret-access-key secrets: boto3 default chain")
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, **credentials)


class S3Publisher:
    """Uploads the registry under ``s3://bucket/prefix`` and then its manifest."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def key(self, name: str) -> str:
        return self.prefix + str(safe_relative(name))

    def publish(self, bundle: RegistryBundle) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        digests = {}
        try:
            for name, data in bundle.files.items():
                self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data)
                digests[name] = hashlib.sha256(data).hexdigest()
            manifest = {
                "version": int(bundle.generated_at.timestamp() * 1e6),
                "generated_at": bundle.generated_at.isoformat(),
                "files": {n: d for n, d in digests.items() if not n.startswith("issued/")},
            }
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(MANIFEST),
                Body=json.dumps(manifest, indent=2).encode(),
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as exc:
            raise RegistryError(f"S3 publication failed: {exc.__class__.__name__}") from exc
        logger.info("registry published to s3://%s/%s", self.bucket, self.prefix)

    def read(self, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise RegistryError(f"S3 read failed: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise RegistryError(f"S3 read failed: {exc.__class__.__name__}") from exc
