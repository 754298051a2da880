"""Allow ``python -m medverse.cli``."""

from __future__ import annotations

import sys

from medverse.cli.main import main

sys.exit(main())
