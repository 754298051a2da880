"""``medverse info``: list the DICOM series in a folder (UID, modality, size, spacing, problems)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from medverse.io.dicom.scan import FolderScan, SeriesInfo


def register(subparsers: Any) -> None:
    """Add the ``info`` command."""
    parser = subparsers.add_parser(
        "info",
        help="list the DICOM series in a folder",
        description="Scan a folder (recursively) or file and list its DICOM series: UID, "
        "modality, description, size and spacing; non-image objects (SEG, RTSTRUCT, SR) are "
        "marked, and files that are not DICOM are counted. Reads headers only.",
    )
    parser.add_argument("path", type=Path, help="DICOM folder or file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the series table; exit 2 when no DICOM object was found."""
    from rich.console import Console

    from medverse.core.errors import DicomError
    from medverse.io.dicom import describe_folder

    scan = describe_folder(args.path)
    if not scan.series and not scan.damaged:
        what = "holds no DICOM files" if scan.skipped else "is empty: no files found"
        detail = f" ({len(scan.skipped)} non-DICOM file(s) skipped)" if scan.skipped else ""
        raise DicomError(what + detail, scan.path)
    console = Console()
    if not console.is_terminal:
        console = Console(width=250)
    print_scan(scan, console)
    return 0


def print_scan(scan: FolderScan, console: Console) -> None:
    """Render a scan as a rich table plus notes on skipped and damaged files."""
    from rich.table import Table
    from rich.text import Text

    studies = {s.study_uid for s in scan.series}
    console.print(
        f"{scan.path}: {len(scan.series)} series in {len(studies)} study(ies)", markup=False
    )
    table = Table()
    for name in ("series UID", "modality", "description"):
        table.add_column(name, no_wrap=name == "series UID", overflow="fold")
    table.add_column("slices", justify="right")
    table.add_column("size (rows x cols x slices)", justify="right")
    table.add_column("spacing (mm)", justify="right")
    table.add_column("status")
    for series in scan.series:
        table.add_row(*(Text(cell) for cell in _row(series)))
    console.print(table)
    if scan.skipped:
        console.print(f"{len(scan.skipped)} file(s) skipped (not DICOM)", markup=False)
    for bad in scan.damaged:
        console.print(f"damaged: {bad.path}: {bad.reason}", style="red", markup=False)


def _row(series: SeriesInfo) -> tuple[str, ...]:
    from medverse.io.dicom.volumes import volumes_summary

    size = f"{series.rows} x {series.columns} x {series.slices}" if series.rows else "-"
    spacing = " x ".join(f"{v:.4g}" for v in series.spacing) if series.spacing else "-"
    if not series.is_image:
        status = f"non-image object ({series.modality or 'unknown'})"
    elif series.problem and (volumes := volumes_summary(series)):
        status = (
            f"{volumes}: convert writes them as 4D NIfTI; --volume K (convert, segment) picks one"
        )
    elif series.problem:
        status = f"not a regular volume: {series.problem}"
    else:
        status = "image volume"
    if not series.series_uid:
        status += "; SeriesInstanceUID is empty, select it by this key"
    return (
        series.key,
        series.modality,
        series.description,
        str(series.slices),
        size,
        spacing,
        status,
    )
