"""``medverse deid``: de-identify a DICOM folder (PS3.15 Basic Profile) with a reusable mapping."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_LISTED = 20  # at most this many skipped/failed files are named one by one


def register(subparsers: Any) -> None:
    """Add the ``deid`` command."""
    parser = subparsers.add_parser(
        "deid",
        help="de-identify DICOM files (PS3.15 Basic Profile, dates shifted, UIDs remapped)",
        description="Copy every DICOM file under IN to OUT with patient identity removed: "
        "names and IDs pseudonymised, dates shifted by one offset per patient, UIDs remapped "
        "consistently, private tags dropped; pixel data untouched (burned-in text is not "
        "removed). The mapping file makes later runs consistent and re-identifies the data: "
        "keep it private and outside OUT.",
    )
    parser.add_argument("input", type=Path, help="DICOM folder (searched recursively) or file")
    parser.add_argument("output", type=Path, help="output folder (not inside IN)")
    parser.add_argument(
        "--mapping",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON mapping to reuse and extend (default: OUT-deid-mapping.json beside OUT)",
    )
    parser.add_argument(
        "--keep-descriptions",
        action="store_true",
        help="keep study/series descriptions and protocol name (you vouch they hold no PHI)",
    )
    parser.set_defaults(func=run)


def default_mapping_path(output: Path) -> Path:
    """The mapping file used when none is given: beside the output folder, not in it."""
    output = output.resolve()
    return output.parent / f"{output.name}-deid-mapping.json"


def run(args: argparse.Namespace) -> int:
    """De-identify, print what was written, skipped and failed; 1 if any DICOM file failed."""
    from medverse.io.deid import deidentify

    mapping = args.mapping or default_mapping_path(args.output)
    summary = deidentify(args.input, args.output, mapping, keep_descriptions=args.keep_descriptions)
    print(
        f"de-identified {len(summary.written)} file(s) of {summary.patients} patient(s) "
        f"into {args.output}"
    )
    print(f"mapping: {summary.mapping_file} (keep it private: it re-identifies the data)")
    _report("skipped", [(f.path, f.reason) for f in summary.skipped])
    _report("FAILED, nothing written", [(f.path, f.reason) for f in summary.failed])
    return 1 if summary.failed else 0


def _report(title: str, items: Sequence[tuple[Path, str]]) -> None:
    if not items:
        return
    print(f"{title}: {len(items)} file(s)")
    for path, reason in items[:_LISTED]:
        print(f"  {path}: {reason}")
    if len(items) > _LISTED:
        print(f"  ... and {len(items) - _LISTED} more")
