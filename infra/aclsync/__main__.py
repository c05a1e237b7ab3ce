"""``python -m infra.aclsync``: see infra/aclsync/agent.py."""

import sys

from infra.aclsync.agent import main

sys.exit(main())
