"""``python -m infra.tools.command``: see ``infra.tools.command.cli``."""

from __future__ import annotations

import sys

from infra.tools.command.cli import main

if __name__ == "__main__":
    sys.exit(main())
