"""The ``medverse`` entry point: builds the parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence

from pydantic import ValidationError

from medverse import __version__
from medverse.core.errors import MedverseError
from medverse.core.logging import configure_logging
from medverse.core.settings import LoggingSettings

# One module per command under medverse.cli; each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "info",
    "convert",
    "deid",
    "segment",
    "demo",
    "plan",
    "train",
    "evaluate",
    "export",
    "serve",
    "worker",
    "users",
    "decide",
    "icu",
    "sim",
    "fl",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every available command registered."""
    parser = argparse.ArgumentParser(
        prog="medverse",
        description="medverse: DICOM/NIfTI in; 3D segmentation, DICOM SEG, meshes, reports out.",
    )
    parser.add_argument("--version", action="version", version=f"medverse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"medverse.cli.{name}") is None:
            continue
        importlib.import_module(f"medverse.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code.

    Args:
        argv: Arguments without the program name (``sys.argv[1:]`` when None).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        logs = LoggingSettings()
    except ValidationError as error:  # a bad MEDVERSE_LOG_LEVEL / MEDVERSE_LOG_FORMAT value
        first = error.errors()[0]
        variable = "MEDVERSE_" + "_".join(str(part) for part in first["loc"]).upper()
        print(f"medverse {args.command}: error: {variable}: {first['msg']}", file=sys.stderr)
        return 2
    configure_logging("DEBUG" if args.debug else logs.log_level, logs.log_format)
    try:
        code = args.func(args)
    except MedverseError as error:
        print(f"medverse {args.command}: error: {error.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medverse {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not bad input: one line unless asked for more
        if args.debug or os.environ.get("MEDVERSE_DEBUG"):
            traceback.print_exc()
        summary = " ".join(f"{type(error).__name__}: {error}".split())
        print(
            f"medverse {args.command}: internal error: {summary} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
