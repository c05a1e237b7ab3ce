"""Container health check: GET http://127.0.0.1:<port>/healthz, exit 0 only on HTTP 200.

Usage: ``f2-healthcheck <PORT_ENV_NAME> <default port> [path]``; the port is read from the
same environment variable the service binds, so a changed port needs no image rebuild.
Standard library only: it runs in the slim images without curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: f2-healthcheck PORT_ENV DEFAULT_PORT [PATH]", file=sys.stderr)
        return 2
    port = os.environ.get(argv[0], argv[1])
    path = argv[2] if len(argv) > 2 else "/healthz"
    url = f"http://127.0.0.1:{int(port)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            healthy = int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
