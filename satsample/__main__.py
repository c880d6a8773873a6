"""``python -m satsample``: the command line (see :mod:`satsample.cli`)."""

import sys

from .cli import main

sys.exit(main())
