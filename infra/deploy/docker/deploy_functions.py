"""Deploy stack.yml's functions through a gateway's REST API, the calls `faas-cli deploy` makes.

``python -m infra.deploy.docker.deploy_functions -f stack.yml --gateway URL [--filter NAME]`` sends
``PUT /system/functions`` (``POST`` when the gateway does not know the function yet) with
``{service, image, envProcess, envVars, labels, annotations, secrets}`` per function; with
``--remove`` it sends ``DELETE /system/functions {"functionName"}`` as `faas-cli remove` does.
For machines where faas-cli cannot be built (``make deploy-local`` uses faas-cli when present).
Credentials: ``GATEWAY_USERNAME`` from the environment (default admin); the password from
``--password-file``, else the secret file ``basic-auth-password`` in ``F2_SECRETS_DIR``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from f2lib.errors import ConfigError, GatewayError
from f2lib.secrets import SecretStore, read_secret_file
from infra.deploy.stackfile import FunctionSpec, StackFile
from infra.services.kit.openfaas import OpenFaaSClient

logger = logging.getLogger(__name__)


def deploy_body(spec: FunctionSpec, fprocess: str = "python index.py") -> dict[str, Any]:
    return {
        "service": spec.name,
        "image": spec.image,
        "envProcess": fprocess,
        "envVars": dict(spec.environment),
        "labels": dict(spec.labels),
        "annotations": dict(spec.annotations),
        "secrets": list(spec.secrets),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.deploy_functions",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("-f", "--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--gateway", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--filter", action="append", dest="names", help="function (repeatable)")
    parser.add_argument("--remove", action="store_true", help="remove instead of deploy")
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="gateway password file (default: basic-auth-password in $F2_SECRETS_DIR)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    stack = StackFile.load(args.stack)
    names = args.names or sorted(stack.functions)
    unknown = [n for n in names if n not in stack.functions]
    if unknown:
        parser.error(f"not in {args.stack}: {', '.join(unknown)}")
    try:
        password = (
            read_secret_file(args.password_file)
            if args.password_file
            else SecretStore().get("basic-auth-password")
        )
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    try:
        gateway = OpenFaaSClient(
            args.gateway, os.environ.get("GATEWAY_USERNAME", "admin"), password
        )
    except ConfigError as exc:
        parser.error(str(exc))
    failed = 0
    with gateway:
        for name in names:
            try:
                if args.remove:
                    status = gateway.delete(name)
                else:
                    status = gateway.deploy(deploy_body(stack.functions[name]))
            except GatewayError as exc:
                if exc.status is None:
                    logger.error("%s: gateway %s unreachable: %s", name, args.gateway, exc)
                    return 1
                failed += 1
                print(f"{name}: HTTP {exc.status}")
                continue
            print(f"{name}: {'removed' if args.remove else 'deployed'} (HTTP {status})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
