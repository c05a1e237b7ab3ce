"""The ACL/CRL sync agent: pull the registry from S3, check it, install it, SIGHUP Mosquitto.

The provision function publishes the registry (ACL, CRL) to S3. Where it shares no filesystem
with the broker (faasd, Kubernetes), this agent runs beside Mosquitto. Each poll reads
``<prefix>/manifest.json``; when its version is new, the files it names are fetched, their
SHA-256 compared with the manifest (a mismatch means a publication is in flight: retried next
poll), the CRL verified against the *local* CA certificate (the trust anchor never comes from
the bucket) and the ACL parsed; only then are they written (temp file, validation, rename) and
the broker reloaded. The agent also warns when the installed CRL nears its nextUpdate, since an
expired CRL locks every device out.

Environment (``AclSyncConfig``; either name works): ACLSYNC_S3_BUCKET | REGISTRY_S3_BUCKET
(required), ACLSYNC_S3_PREFIX | REGISTRY_S3_PREFIX (f2pipe/registry), ACLSYNC_OUTPUT_DIR |
ACLSYNC_TARGET_DIR (certs), ACLSYNC_CA_CERT (<output>/ca.crt), ACLSYNC_PID_FILE (broker pid
file to SIGHUP; unset where a wrapper watches the files), ACLSYNC_INTERVAL_SECONDS |
ACLSYNC_POLL_SECONDS (10), ACLSYNC_HTTP_PORT (optional /healthz and /metrics), ACLSYNC_HTTP_HOST,
S3_ENDPOINT_URL, S3_REGION, LOG_LEVEL.
S3 credentials: the secret files ``s3-access-key-id``/``s3-secret-access-key`` (in F2_SECRETS_DIR,
default /var/openfaas/secrets), else boto3's default chain (an instance or pod role where the
bucket's cloud provides one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import threading
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.errors import CertificateError, RegistryError
from infra.services.kit.ops_http import DEFAULT_LIVENESS_GRACE_S
from infra.services.kit.runner import Service, run_service
from provision.pki import load_certificate, load_crl
from provision.publishers import (
    MANIFEST,
    FilesystemPublisher,
    PidFileReloader,
    S3Publisher,
    s3_client,
)
from provision.registry import ACL_FILE, CA_FILE, CRL_FILE, REGISTRY_FILE, RegistryBundle

logger = logging.getLogger(__name__)

INSTALLED = (CRL_FILE, REGISTRY_FILE, ACL_FILE)  # ACL last: it names the devices
CRL_WARNING = dt.timedelta(days=7)


class AclSyncConfig(BaseSettings):
    """The agent's environment; each setting also answers to the name the deploy files use."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    s3_bucket: str = Field(validation_alias=AliasChoices("ACLSYNC_S3_BUCKET", "REGISTRY_S3_BUCKET"))
    s3_prefix: str = Field(
        "f2pipe/registry", validation_alias=AliasChoices("ACLSYNC_S3_PREFIX", "REGISTRY_S3_PREFIX")
    )
    output_dir: Path = Field(
        Path("certs"), validation_alias=AliasChoices("ACLSYNC_OUTPUT_DIR", "ACLSYNC_TARGET_DIR")
    )
    ca_cert: Path | None = Field(None, validation_alias="ACLSYNC_CA_CERT")
    pid_file: Path | None = Field(None, validation_alias="ACLSYNC_PID_FILE")
    interval_seconds: float = Field(
        10.0, validation_alias=AliasChoices("ACLSYNC_INTERVAL_SECONDS", "ACLSYNC_POLL_SECONDS")
    )
    http_port: int | None = Field(None, validation_alias="ACLSYNC_HTTP_PORT")
    http_host: str = Field("0.0.0.0", validation_alias="ACLSYNC_HTTP_HOST")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # Unhealthy this long, /livez answers 503 and a supervisor restarts the process.
    liveness_grace_s: float = Field(
        DEFAULT_LIVENESS_GRACE_S, validation_alias="F2_LIVENESS_GRACE_SECONDS", gt=0
    )
    s3_endpoint_url: str | None = Field(None, validation_alias="S3_ENDPOINT_URL")
    s3_region: str = Field("us-east-1", validation_alias="S3_REGION")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AclSyncAgent:
    """One poll = read the manifest, and install a new version when it checks out."""

    def __init__(
        self,
        source: S3Publisher,
        target: FilesystemPublisher,
        ca_certificate_pem: bytes,
    ) -> None:
        self.source = source
        self.target = target
        self.ca_certificate_pem = ca_certificate_pem
        self.applied_version: int | None = None
        self.last_error: str | None = None
        self.crl_ok = False

    def _fetch(self, name: str, manifest: dict[str, Any]) -> bytes:
        data = self.source.read(name)
        if data is None:
            raise RegistryError(f"{name} named in the manifest is missing")
        expected = manifest.get("files", {}).get(name)
        if expected != hashlib.sha256(data).hexdigest():
            raise RegistryError(f"{name} does not match the manifest (publication in flight?)")
        return data

    def poll(self) -> bool:
        """True when a new version was installed."""
        raw = self.source.read(MANIFEST)
        if raw is None:
            logger.info("no manifest in s3://%s/%s yet", self.source.bucket, self.source.prefix)
            return False
        try:
            manifest = json.loads(raw)
            version = int(manifest["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError("manifest is not valid") from exc
        if version == self.applied_version:
            return False
        published_ca = self._fetch(CA_FILE, manifest)
        if load_certificate(published_ca) != load_certificate(self.ca_certificate_pem):
            raise RegistryError("published CA certificate differs from the local trust anchor")
        files = {name: self._fetch(name, manifest) for name in INSTALLED}
        generated_at = dt.datetime.fromisoformat(manifest["generated_at"])
        self.target.publish(RegistryBundle(files, generated_at))
        self.applied_version = version
        logger.info("installed registry version %d into %s", version, self.target.directory)
        return True

    def check_crl_freshness(self, now: dt.datetime) -> None:
        self.crl_ok = False
        installed = self.target.read(CRL_FILE)
        if installed is None:
            logger.error("no CRL installed in %s", self.target.directory)
            return
        try:
            next_update = load_crl(installed).next_update_utc
        except CertificateError:
            logger.error("installed CRL cannot be parsed")
            return
        self.crl_ok = next_update is not None and next_update > now
        if next_update is None or next_update - now < CRL_WARNING:
            logger.error(
                "installed CRL expires %s: re-sign it (POST /function/provision/crl)", next_update
            )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when the last poll worked and the installed CRL is current."""
        ok = self.last_error is None and self.crl_ok
        return ok, {
            "ok": ok,
            "version": self.applied_version,
            "error": self.last_error,
            "crl_current": self.crl_ok,
        }


def build_agent(config: AclSyncConfig, client: Any) -> AclSyncAgent:
    """The agent reading the bucket through ``client`` (boto3 S3) into ``config.output_dir``."""
    ca_path = config.ca_cert or config.output_dir / CA_FILE
    ca_pem = ca_path.read_bytes()
    target = FilesystemPublisher(
        config.output_dir, load_certificate(ca_pem), PidFileReloader(config.pid_file)
    )
    return AclSyncAgent(S3Publisher(client, config.s3_bucket, config.s3_prefix), target, ca_pem)


def run(agent: AclSyncAgent, interval: float, stop: threading.Event, *, once: bool) -> int:
    failures = 0
    while not stop.is_set():
        try:
            agent.poll()
            failures = 0
            agent.last_error = None
        except (RegistryError, CertificateError) as exc:
            failures += 1
            agent.last_error = str(exc)
            logger.warning("registry not installed (attempt %d): %s", failures, exc)
        agent.check_crl_freshness(utcnow())
        if once:
            return 0 if failures == 0 else 1
        stop.wait(interval)
    return 0


def service(config: AclSyncConfig, client: Any, stop: threading.Event, *, once: bool) -> Service:
    """The agent as the runner runs it: polls until ``stop`` (or once), health on ``/healthz``."""
    agent = build_agent(config, client)
    logger.info(
        "aclsync: s3://%s/%s -> %s every %.1fs",
        config.s3_bucket,
        config.s3_prefix,
        config.output_dir,
        config.interval_seconds,
    )
    return Service(lambda stop: run(agent, config.interval_seconds, stop, once=once), agent.health)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.services.aclsync", description=__doc__)
    parser.add_argument("--once", action="store_true", help="poll once and exit (1 on failure)")
    args = parser.parse_args(argv)
    config = AclSyncConfig()  # s3_bucket comes from the environment
    return run_service(
        "aclsync",
        config,
        lambda secrets: s3_client(config.s3_endpoint_url, config.s3_region, secrets),
        partial(service, config, once=args.once),
    )
