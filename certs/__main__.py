"""``python -m certs``: see certs/README.md."""

import sys

from certs.cli import main

sys.exit(main())
