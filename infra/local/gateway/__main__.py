"""``python -m infra.local.gateway``: serve stack.yml's functions behind the OpenFaaS API."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

import urllib3
from waitress import serve

from f2lib.secrets import SecretStore
from infra.deploy.stackfile import StackFile
from infra.local.gateway.api import async_invoker, build_app
from infra.local.gateway.asyncq import AsyncQueue
from infra.local.gateway.backends import ProcessBackend, ProcessBackendConfig, ReplicaBackend
from infra.local.gateway.containers import ContainerBackend, ContainerBackendConfig
from infra.local.gateway.core import Gateway
from infra.local.gateway.metrics import GatewayMetrics
from infra.local.gateway.secrets import SecretsFolder
from infra.local.settings import RuntimeConfig

logger = logging.getLogger("infra.local.gateway")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.local.gateway", description=__doc__)
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--state-dir", type=Path, default=Path(".state/gateway"))
    parser.add_argument(
        "--secrets-dir",
        type=Path,
        required=True,
        help="folder of secret files; basic-auth-user/-password guard /system",
    )
    parser.add_argument("--env-file", type=Path, help="JSON {fn or '*': {VAR: value}} overrides")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--backend", choices=("processes", "containers"), default="processes")
    parser.add_argument("--docker-host", help="DOCKER_HOST of the engine (containers backend)")
    parser.add_argument("--service-host", help="address containers reach the runtime's services on")
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="FN=HOST:CONTAINER[:ro]",
        help="a bind mount for one function's containers (repeatable)",
    )
    parser.add_argument("--watchdog-bin", type=Path, default=None)
    parser.add_argument(
        "--watchdog-function",
        default=None,
        help="serve this function's first process replica through of-watchdog",
    )
    parser.add_argument(
        "--targets-file", type=Path, default=None, help="write the replicas as file-SD here"
    )
    return parser.parse_args(argv)


def make_backend(
    args: argparse.Namespace, runtime: RuntimeConfig, http: urllib3.PoolManager
) -> ReplicaBackend:
    state_dir = args.state_dir.resolve()
    if args.backend == "containers":
        if not args.docker_host or not args.service_host:
            raise SystemExit("the containers backend needs --docker-host and --service-host")
        mounts: dict[str, list[str]] = {}
        for item in args.mount:
            function, _, mount = item.partition("=")
            mounts.setdefault(function, []).append(mount)
        return ContainerBackend(
            ContainerBackendConfig(
                state_dir=state_dir,
                docker_host=args.docker_host,
                service_host=args.service_host,
                gateway_id=f"{args.port}",
                mounts=mounts,
            ),
            http,
        )
    return ProcessBackend(
        ProcessBackendConfig(
            build_dir=args.build_dir.resolve(),
            state_dir=state_dir,
            python=sys.executable,
            base_env=runtime.replica_env(),
            watchdog_bin=args.watchdog_bin,
            watchdog_function=args.watchdog_function,
        ),
        http,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runtime = RuntimeConfig()
    logging.basicConfig(
        level=(runtime.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stack = StackFile.load(args.stack)
    overrides = json.loads(args.env_file.read_text()) if args.env_file else {}
    store = SecretStore(args.secrets_dir)
    auth = (store.get("basic-auth-user").get_secret_value(), store.get("basic-auth-password"))
    http = urllib3.PoolManager(num_pools=64, maxsize=64, block=False)
    gateway = Gateway(
        make_backend(args, runtime, http),
        stack.functions,
        secrets_dir=args.secrets_dir.resolve(),
        state_dir=args.state_dir.resolve(),
        env_overrides=overrides,
        targets_file=args.targets_file,
        metrics=GatewayMetrics(),
        http=http,
    )
    secrets = SecretsFolder(args.secrets_dir.resolve(), on_change=gateway.refresh_secrets)
    async_queue = AsyncQueue(async_invoker(gateway), http)
    app = build_app(gateway, secrets, auth, async_queue)

    def shutdown(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping functions", signum)
        async_queue.stop()
        gateway.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    gateway.start_functions()
    logger.info("gateway (%s) listening on %s:%d", gateway.backend.kind, args.host, args.port)
    serve(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident=None,
        connection_limit=512,
        channel_timeout=120,
    )


if __name__ == "__main__":
    main()
