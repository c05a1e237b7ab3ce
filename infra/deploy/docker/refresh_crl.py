"""Ask the provisioning function to re-sign the CRL (POST /function/provision/crl).

Run on a schedule (Kubernetes CronJob, systemd timer on faasd): the CRL must be re-signed well
before its nextUpdate, or the broker refuses every device. The bearer token is the file given
with ``--token-file``, else the secret file ``provision-token`` in ``F2_SECRETS_DIR`` (default
/var/openfaas/secrets); never an environment variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from f2lib.errors import ConfigError, GatewayError
from f2lib.secrets import SecretStore, read_secret_file
from infra.services.kit.openfaas import Invocation, OpenFaaSClient

logger = logging.getLogger(__name__)


def refresh_crl(
    gateway: OpenFaaSClient, token: SecretStr, *, force: bool = False, timeout_s: float = 60.0
) -> Invocation:
    """``POST /function/provision/crl`` (``?force=1`` to re-sign even when not due)."""
    return gateway.invoke(
        "provision",
        b"{}",
        {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Content-Type": "application/json",
        },
        path="crl",
        params={"force": "1"} if force else None,
        timeout_s=timeout_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.refresh_crl",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--gateway", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--force", action="store_true", help="re-sign even if not due")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="bearer token file (default: provision-token in $F2_SECRETS_DIR)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        token = (
            read_secret_file(args.token_file)
            if args.token_file
            else SecretStore().get("provision-token")
        )
        gateway = OpenFaaSClient(args.gateway)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    try:
        with gateway:
            answer = refresh_crl(gateway, token, force=args.force)
    except GatewayError as exc:
        logger.error("CRL refresh via %s failed: %s", args.gateway, exc)
        return 1
    if answer.status >= 300:
        logger.error("CRL refresh refused: HTTP %d %s", answer.status, answer.body[:200])
        return 1
    logger.info("CRL refresh: HTTP %d %s", answer.status, answer.body[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
