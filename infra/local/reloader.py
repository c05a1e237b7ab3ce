"""``python -m infra.local.reloader``: SIGHUP a process when files it reads change.

With the container backend the provisioning function writes the broker's ACL and CRL through a
bind mount and cannot signal Mosquitto, which runs outside its PID namespace; this small part
of the local runtime watches those files and sends Mosquitto the SIGHUP that reloads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

logger = logging.getLogger("infra.local.reloader")


def fingerprint(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    """(mtime ns, size) of each file, (0, 0) when absent."""
    marks = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            marks.append((0, 0))
        else:
            marks.append((stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


def signal_pidfile(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
    except (OSError, ValueError) as exc:
        logger.warning("cannot signal the process of %s: %s", pid_file, exc)
        return False
    return True


def watch(paths: list[Path], pid_file: Path, stop: threading.Event, interval: float) -> None:
    seen = fingerprint(paths)
    while not stop.wait(interval):
        now = fingerprint(paths)
        if now != seen:
            seen = now
            if signal_pidfile(pid_file):
                logger.info(
                    "reloaded %s after a change of %s", pid_file, ", ".join(map(str, paths))
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.reloader", description=__doc__)
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--watch", type=Path, action="append", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logger.info("watching %s for %s", ", ".join(map(str, args.watch)), args.pid_file)
    watch(args.watch, args.pid_file, stop, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
