"""``medverse serve``: run the HTTP service (API, job store and one in-process worker)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service",
        description=(
            "Run the medverse service: upload studies, queue segmentation jobs, download "
            "results, all behind API tokens and an audit log. With no configuration it keeps "
            "a SQLite database and the stored files under --data-dir and runs one worker in "
            "the same process; set MEDVERSE_DATABASE_URL=postgresql+psycopg://... to share a "
            "PostgreSQL database with `medverse worker` processes. Create a user and token "
            "first with `medverse users add NAME --role admin` and `medverse users token NAME`."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--data-dir", type=Path, help="database and storage folder (default MEDVERSE_DATA_DIR)"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="folder of <name>.pt checkpoints (MEDVERSE_MODELS_DIR)"
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run a worker in this process (run `medverse worker` instead)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from medverse.cli.users import service_settings
    from medverse.service.api import serve

    settings = service_settings(args.data_dir, args.models_dir)
    serve(settings, host=args.host, port=args.port, run_worker=not args.no_worker)
    return 0
