"""Ask the provisioning function to re-sign the CRL (POST /function/provision/crl).

Run on a schedule (Kubernetes CronJob, systemd timer on faasd): the CRL must be re-signed well
before its nextUpdate, or the broker refuses every device. The bearer token is the secret
``provision-token`` (file in ``F2_SECRETS_DIR`` or /var/openfaas/secrets, else the environment).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import requests

from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore

logger = logging.getLogger(__name__)


def refresh_crl(
    gateway_url: str, token: str, *, force: bool = False, timeout: float = 60.0
) -> requests.Response:
    url = gateway_url.rstrip("/") + "/function/provision/crl"
    return requests.post(
        url,
        params={"force": "1"} if force else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        data=b"{}",
        timeout=timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.refresh_crl",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--gateway", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--force", action="store_true", help="re-sign even if not due")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        token = SecretStore().get("provision-token").get_secret_value()
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    try:
        response = refresh_crl(args.gateway, token, force=args.force)
    except requests.RequestException as exc:
        logger.error("CRL refresh via %s failed: %s", args.gateway, type(exc).__name__)
        return 1
    if response.status_code >= 300:
        logger.error("CRL refresh refused: HTTP %d %s", response.status_code, response.text[:200])
        return 1
    logger.info("CRL refresh: HTTP %d %s", response.status_code, response.text[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
