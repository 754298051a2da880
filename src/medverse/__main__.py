"""Allow ``python -m medverse`` (used by ``torchrun ... -m medverse train``)."""

from __future__ import annotations

import sys

from medverse.cli.main import main

sys.exit(main())
