"""``medverse worker``: run one job worker against the service database (one per GPU)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``worker`` command."""
    parser = subparsers.add_parser(
        "worker",
        help="run a job worker for the service",
        description=(
            "Claim queued segmentation jobs from the service database and run them, one at a "
            "time, until SIGTERM or Ctrl-C. Use the same MEDVERSE_DATABASE_URL, data dir and "
            "models dir as `medverse serve`; run one per GPU (CUDA_VISIBLE_DEVICES=N)."
        ),
    )
    parser.add_argument(
        "--data-dir", type=Path, help="database and storage folder (default MEDVERSE_DATA_DIR)"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="folder of <name>.pt checkpoints (MEDVERSE_MODELS_DIR)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Work until stopped."""
    from medverse.cli.users import service_settings
    from medverse.service.api import work

    work(service_settings(args.data_dir, args.models_dir))
    return 0
