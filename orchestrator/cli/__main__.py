"""``python -m orchestrator.cli``: the ``posetune`` command."""

import sys

from orchestrator.cli.parser import main

sys.exit(main())
