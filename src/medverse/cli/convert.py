"""``medverse convert``: DICOM series or NIfTI in, NIfTI out, affine kept, written atomically."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``convert`` command."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a DICOM series (or NIfTI) to NIfTI",
        description="Read a DICOM folder or file (or a NIfTI file) and write NIfTI with the "
        "same geometry. The output appears only when the whole conversion succeeded.",
    )
    parser.add_argument("input", type=Path, help="DICOM folder, DICOM file or .nii/.nii.gz")
    parser.add_argument("output", type=Path, help="output .nii or .nii.gz file")
    parser.add_argument(
        "--series", metavar="UID", default=None, help="series to convert (see `medverse info`)"
    )
    parser.add_argument(
        "--allow-irregular",
        action="store_true",
        help="accept uneven slice spacing or gaps and use the median slice step",
    )
    parser.add_argument(
        "--volume",
        metavar="K",
        type=int,
        default=None,
        help="of a multi-volume DICOM series (phases, echoes, b-values), write only volume K "
        "(1-based, as `medverse info` lists them); without it all volumes go into one 4D "
        "NIfTI with a sidecar .json naming each volume",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print one line describing what was written."""
    from medverse.io.dicom import convert_to_nifti
    from medverse.io.dicom.volumes import convert_volumes, is_multi_volume

    if args.volume is not None or is_multi_volume(args.input, args.series):
        written = convert_volumes(args.input, args.output, args.series, volume=args.volume)
        first = written[0].volume
        i, j, k = first.shape
        spacing = " x ".join(f"{v:.4g}" for v in first.spacing)
        count = f" x {len(written)} volumes ({written[0].attribute})" if len(written) > 1 else ""
        print(f"wrote {args.output}: {i} x {j} x {k}{count} voxels, {spacing} mm")
        return 0
    volume = convert_to_nifti(
        args.input, args.output, args.series, allow_irregular=args.allow_irregular
    )
    i, j, k = volume.shape
    spacing = " x ".join(f"{v:.4g}" for v in volume.spacing)
    print(
        f"wrote {args.output}: {i} x {j} x {k} voxels, {spacing} mm, "
        f"{volume.array.dtype}, modality {volume.modality or 'unknown'}"
    )
    return 0
