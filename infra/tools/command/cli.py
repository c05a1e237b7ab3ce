"""``python -m infra.tools.command send|show|list``: downlink commands from a terminal.

    send f2-e4fd45f654be J1 strike-1 unlock --params '{"duration_s": 5}' [--wait 5]
    show <command_id>
    list f2-e4fd45f654be [--limit 20] [--before <command_id>]

The gateway and the caller's token come from GATEWAY_URL and COMMAND_TOKEN
(``eval "$(make -s env)"``), else from the local stack's state folder. ``send`` prints the
answer and exits 0 when the device answered ``ok``, 3 when it answered ``rejected`` or
``expired``, 4 when no answer came within the wait (202 ``sent``), 1 on a refused request.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from f2lib.errors import CommandError
from infra.tools.command.client import CommandAnswer, CommandClient

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_DEVICE_SAID_NO, EXIT_NO_ANSWER = 0, 1, 2, 3, 4


class CommandCliConfig(BaseSettings):
    """GATEWAY_URL and COMMAND_TOKEN (what ``make -s env`` prints), F2_STATE_DIR."""

    model_config = SettingsConfigDict(extra="ignore")

    gateway_url: str | None = None
    command_token: SecretStr | None = None
    f2_state_dir: Path | None = None

    def resolved(self) -> tuple[str, SecretStr] | None:
        if self.gateway_url and self.command_token is not None:
            return self.gateway_url, self.command_token
        from infra.local.stack import LocalStack

        stack = LocalStack.load(self.f2_state_dir)
        try:
            env = stack.env()
        except (OSError, ValueError):
            return None
        return env["GATEWAY_URL"], SecretStr(env["COMMAND_TOKEN"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.tools.command", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    send = sub.add_parser("send", help="send a command and wait for the device's answer")
    send.add_argument("device", help="f2-<mac>")
    send.add_argument("connector", help="J1..J4")
    send.add_argument("component", help="strike-1, siren-1, reader-1")
    send.add_argument("action", help="unlock, lock, on, off, indicator")
    send.add_argument("--params", default="{}", help="JSON object, e.g. '{\"duration_s\": 5}'")
    send.add_argument("--wait", type=float, default=None, help="seconds to wait (0..30)")
    show = sub.add_parser("show", help="one command's audit row")
    show.add_argument("command_id")
    listing = sub.add_parser("list", help="a device's commands, newest first")
    listing.add_argument("device")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--before", default=None, help="command id to page from")
    return parser


def summary(answer: CommandAnswer) -> str:
    body = answer.body
    if answer.status >= 400:
        return f"refused ({answer.status} {body.get('error')}): {body.get('message')}"
    status = body.get("status")
    if status == "sent":
        expires = body.get("expires_at")
        return f"command {body.get('command_id')} sent; no answer yet (expires {expires})"
    detail = f": {body['detail']}" if body.get("detail") else ""
    latency = body.get("reply_latency_s")
    took = f" in {latency:.3f}s" if isinstance(latency, int | float) else ""
    return f"command {body.get('command_id')} {status}{took}{detail}"


def exit_code(answer: CommandAnswer) -> int:
    if answer.status >= 400:
        return EXIT_REFUSED
    return {"ok": EXIT_OK, "sent": EXIT_NO_ANSWER}.get(
        answer.command_status or "", EXIT_DEVICE_SAID_NO
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    found = CommandCliConfig().resolved()
    if found is None:
        print('GATEWAY_URL/COMMAND_TOKEN not set: run `eval "$(make -s env)"`', file=sys.stderr)
        return EXIT_USAGE
    client = CommandClient(*found)
    try:
        if args.what == "send":
            try:
                params: Any = json.loads(args.params)
            except ValueError:
                print(f"--params is not JSON: {args.params!r}", file=sys.stderr)
                return EXIT_USAGE
            answer = client.send(
                args.device, args.connector, args.component, args.action, params, args.wait
            )
        elif args.what == "show":
            answer = client.get(args.command_id)
        else:
            answer = client.list(args.device, args.limit, args.before)
    except CommandError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(answer.body, indent=2, sort_keys=True))
    if args.what == "send":
        print(summary(answer), file=sys.stderr)
        return exit_code(answer)
    return EXIT_OK if answer.status < 400 else EXIT_REFUSED
