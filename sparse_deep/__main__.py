"""``python -m sparse_deep``: the same command as ``sparse-deep``."""

import sys

from .cli import main

sys.exit(main())
