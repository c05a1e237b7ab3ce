"""``python -m infra.services.aclsync``: see infra/services/aclsync/agent.py."""

import sys

from infra.services.aclsync.agent import main

sys.exit(main())
