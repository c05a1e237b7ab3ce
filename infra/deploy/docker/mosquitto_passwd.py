"""Write a Mosquitto password file for the internal listener from secret files.

``python -m infra.deploy.docker.mosquitto_passwd --out /mosquitto/auth/passwd \
f2-bridge=/path/to/pw``
hashes each password as ``mosquitto_passwd`` does (``$7$``, PBKDF2-SHA512) without putting it
on a command line, and leaves the file untouched when it already verifies (no broker reload).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.deploy.mosquitto.config import (
    InternalUser,
    check_name,
    hash_password,
    render_password_file,
    verify_password,
)


def current_entries(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def write_password_file(out: Path, users: Sequence[tuple[str, str]]) -> bool:
    """Write ``out`` for ``(name, password)`` pairs; False when it already matches."""
    existing = current_entries(out)
    if set(existing) == {name for name, _ in users} and all(
        verify_password(password, existing[name]) for name, password in users
    ):
        return False
    text = render_password_file(InternalUser(name, hash_password(pw)) for name, pw in users)
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, out)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.mosquitto_passwd",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("users", nargs="+", metavar="USER=PASSWORD_FILE")
    args = parser.parse_args(argv)
    users: list[tuple[str, str]] = []
    for item in args.users:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"expected USER=PASSWORD_FILE, got {item!r}")
        users.append((check_name(name), Path(path).read_text().strip()))
    changed = write_password_file(args.out, users)
    print(f"{args.out}: {'written' if changed else 'unchanged'} ({len(users)} users)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
