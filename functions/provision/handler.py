"""OpenFaaS entry point of the provisioning function: config once, then requests to Provisioner.

Secrets (``/var/openfaas/secrets/<name>``, ``F2_SECRETS_DIR`` overrides the folder):
``provision-token``, ``ca-key``, ``ca-crt``, ``devices-dsn``; for S3 optionally
``s3-access-key-id`` and ``s3-secret-access-key`` (else boto3's default credential chain).
Environment: see ``ProvisionConfig``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.errors import ConfigError, F2PipeError, ProvisioningError, RegistryError, StoreError
from f2lib.httpfn import Request, answer, error
from f2lib.metrics import function_metrics
from f2lib.secrets import SecretStore

from .pki import CertificateAuthority
from .provisioner import Provisioner, ProvisionLimits
from .publishers import FilesystemPublisher, PidFileReloader, S3Publisher, s3_client
from .registry import DeviceRegistry, RegistryPublisher, RegistrySync

logger = logging.getLogger(__name__)


class ProvisionConfig(BaseSettings):
    """Environment of the provisioning function (names are the upper-cased field names)."""

    model_config = SettingsConfigDict(extra="ignore")

    registry_publisher: Literal["filesystem", "s3"] = "filesystem"
    registry_dir: Path = Path("certs")
    mosquitto_pid_file: Path | None = None
    registry_s3_bucket: str | None = None
    registry_s3_prefix: str = "f2pipe/registry"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    cert_validity_days: int = 365
    max_body_bytes: int = 16 * 1024


def build_provisioner(
    config: ProvisionConfig | None = None, secrets: SecretStore | None = None
) -> Provisioner:
    config = config or ProvisionConfig()
    secrets = secrets or SecretStore()
    ca = CertificateAuthority.from_pem(
        secrets.get("ca-crt").get_secret_value().encode(),
        secrets.get("ca-key").get_secret_value().encode(),
    )
    publisher: RegistryPublisher
    if config.registry_publisher == "s3":
        if not config.registry_s3_bucket:
            raise ConfigError("REGISTRY_S3_BUCKET is required with REGISTRY_PUBLISHER=s3")
        publisher = S3Publisher(
            s3_client(config.s3_endpoint_url, config.s3_region, secrets),
            config.registry_s3_bucket,
            config.registry_s3_prefix,
        )
    else:
        publisher = FilesystemPublisher(
            config.registry_dir, ca.certificate, PidFileReloader(config.mosquitto_pid_file)
        )
    registry = DeviceRegistry.from_dsn(secrets.get("devices-dsn").get_secret_value())
    return Provisioner(
        token=secrets.get("provision-token").get_secret_value(),
        ca=ca,
        registry=registry,
        sync=RegistrySync(ca, registry, publisher),
        limits=ProvisionLimits(config.max_body_bytes, config.cert_validity_days),
    )


_provisioner: Provisioner | None = None
_lock = threading.Lock()


def provisioner() -> Provisioner:
    global _provisioner
    with _lock:
        if _provisioner is None:
            _provisioner = build_provisioner()
        return _provisioner


REALM = "f2pipe-provision"


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return answer(status, body, realm=REALM)


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return error(status, code, message, realm=REALM)


def handle(event: Any, context: Any) -> dict[str, Any]:
    """python3-http contract: ``event`` has method, path, headers, body, query."""
    request = Request.of(event)
    try:
        response = provisioner().dispatch(request)
    except ProvisioningError as exc:
        logger.info("refused %s %s: %s", request.method, request.path, exc.code)
        function_metrics().refused(exc.code)
        return _error(exc.status, exc.code, str(exc))
    except ConfigError as exc:
        logger.error("provision is misconfigured: %s", exc)
        return _error(500, "misconfigured", "the provisioning function is misconfigured")
    except (StoreError, RegistryError) as exc:
        logger.error("provision dependency failed: %s", exc)
        return _error(503, "unavailable", "registry temporarily unavailable; retry")
    except F2PipeError as exc:
        logger.error("provision failed: %s", exc.__class__.__name__)
        return _error(500, "internal_error", "provisioning failed")
    return _answer(response.status, response.body)
