"""``python -m linear_impls``: the same as the ``linbench`` console script."""

import sys

from .cli import main

sys.exit(main())
