"""``python -m genesis_logging``."""

import sys

from .cli import main

sys.exit(main())
