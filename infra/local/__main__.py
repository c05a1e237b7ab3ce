"""`python -m infra.local up|down|status|env|logs|build`: the local stack's command line.

Settings are read once here (:class:`~infra.local.settings.RuntimeConfig`) and passed down.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys

from f2lib.errors import F2PipeError
from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.settings import RuntimeConfig
from infra.local.stack import PARTS, LocalStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start every part (idempotent)")
    sub.add_parser("down", help="stop every part")
    sub.add_parser("status", help="one line per part; exit 0 only when all are healthy")
    sub.add_parser("env", help="print export lines for endpoints and credentials")
    logs = sub.add_parser("logs", help="tail logs")
    logs.add_argument("part", nargs="?", choices=[*PARTS, "functions"])
    sub.add_parser("build", help="write build/<fn>/ as faas-cli build --shrinkwrap does")
    args = parser.parse_args(argv)
    config = RuntimeConfig()
    logging.basicConfig(
        level=(config.log_level or "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stack = LocalStack.load(config=config)
    if args.command == "up":
        try:
            stack.up()
        except Exception as exc:
            print(f"up failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        healthy = True
        for part, ok, detail in stack.status():
            healthy &= ok
            print(f"{part:<10} {'up  ' if ok else 'DOWN'}  {detail}")
        return 0 if healthy else 1
    if args.command == "env":
        if not (stack.state_dir / "secrets").exists():
            print("# the stack has not been started: run `make up` first", file=sys.stderr)
            return 1
        for key, value in stack.env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if args.command == "logs":
        if args.part == "functions":
            files = sorted((stack.state_dir / "gateway" / "logs").glob("*.log"))
        elif args.part:
            files = [stack.log_path(args.part)]
        else:
            files = [stack.log_path(p) for p in PARTS]
            files += sorted((stack.state_dir / "gateway" / "logs").glob("*.log"))
        existing = [str(f) for f in files if f.exists()]
        if not existing:
            print("no logs yet: run `make up` first", file=sys.stderr)
            return 1
        return subprocess.call(["tail", "-n", "50", "-F", *existing])
    if args.command == "build":
        try:
            built = build_all(StackFile.load(stack.root / "stack.yml"), stack.root / "build")
        except F2PipeError as exc:
            print(f"build failed: {exc}", file=sys.stderr)
            return 1
        for name, path in built.items():
            print(f"{name} shrink-wrapped to {path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
