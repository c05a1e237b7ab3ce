"""Create the registry's S3 bucket when it is missing (deploy bootstrap, safe to run again).

``python -m infra.deploy.docker.ensure_bucket`` reads ``S3_ENDPOINT_URL``, ``S3_REGION`` and
``REGISTRY_S3_BUCKET`` from the environment and the credentials from the secret files
``s3-access-key-id`` / ``s3-secret-access-key`` in ``F2_SECRETS_DIR`` (default
``/var/openfaas/secrets``), as the provisioning function does; never from the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from f2lib.errors import ConfigError
from f2lib.secrets import SecretStore

logger = logging.getLogger(__name__)


def ensure_bucket(client: Any, bucket: str) -> bool:
    """True when the bucket was created, False when it already existed."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=bucket)
    return True


def make_client(endpoint: str | None, region: str, secrets: SecretStore) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=secrets.get("s3-access-key-id").get_secret_value(),
        aws_secret_access_key=secrets.get("s3-secret-access-key").get_secret_value(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.ensure_bucket",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT_URL"))
    parser.add_argument("--region", default=os.environ.get("S3_REGION", "us-east-1"))
    parser.add_argument("--bucket", default=os.environ.get("REGISTRY_S3_BUCKET"))
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=120.0,
        help="keep retrying while the store is not reachable yet",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    if not args.bucket:
        parser.error("--bucket or REGISTRY_S3_BUCKET is required")
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + args.wait_seconds
    while True:
        try:
            client = make_client(args.endpoint, args.region, SecretStore())
            created = ensure_bucket(client, args.bucket)
            break
        except ConfigError as exc:
            logger.error("%s", exc)
            return 2
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() >= deadline:
                logger.error("bucket %s at %s: %s", args.bucket, args.endpoint, exc)
                return 1
            logger.info("S3 store %s not ready (%s); retrying", args.endpoint, type(exc).__name__)
            time.sleep(3)
    logger.info("bucket %s %s", args.bucket, "created" if created else "already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
