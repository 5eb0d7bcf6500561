"""``python -m hudd``: the ``hudd`` command, also under ``torchrun -m hudd``."""

import sys

from .cli import main

sys.exit(main())
