"""``python -m infra.services.aclsync``: see infra/services/aclsync/agent.py."""

import sys

from infra.services.aclsync.agent import main

if __name__ == "__main__":
    sys.exit(main())
