"""``python -m hudd.cli``: the ``hudd`` command."""

import sys

from .commands import main

sys.exit(main())
