"""``medverse segment``: segment a DICOM series or NIfTI image and write the output bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medverse.inference.api import SegmentResult


def register(subparsers: Any) -> None:
    """Add the ``segment`` command."""
    parser = subparsers.add_parser(
        "segment",
        help="segment an image with a model checkpoint",
        description=(
            "Segment a DICOM series (folder or file) or a NIfTI image with a model checkpoint. "
            "Writes labels.nii.gz, seg.dcm (DICOM input only), meshes.glb, report.json and "
            "overview.png into --out; on failure --out is left as it was."
        ),
    )
    parser.add_argument("input", type=Path, help="DICOM folder or file, or .nii/.nii.gz image")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="model checkpoint (.pt)")
    model.add_argument(  # a MONAI bundle: see segment_with_bundle at the end of this file
        "--bundle",
        type=Path,
        metavar="DIR",
        help="MONAI model-zoo bundle folder (configs/inference.json, configs/metadata.json, "
        "models/model.pt or model.ts), read offline",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--series", metavar="UID", help="series to read when the DICOM folder holds several"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run: auto = CUDA when available (bf16/fp16 mixed precision), "
        "else the CPU (float32; minutes rather than seconds for a full CT)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        metavar="F",
        help="sliding-window overlap in [0, 1) (default 0.5); 0.5 runs about 8x the windows "
        "of 0 in 3D, 0.75 about 64x",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="mirroring test-time augmentation: averages 8 flips, 8x the compute",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the segmentation and print where the files went."""
    from medverse.inference.api import segment

    if getattr(args, "bundle", None) is not None:
        result = segment_with_bundle(args)
    else:
        result = segment(
            args.input,
            model_path=args.model,
            out_dir=args.out,
            series_uid=args.series,
            device=args.device,
            overlap=args.overlap,
            mirror_tta=args.tta,
        )
    for structure in result.report.structures:
        print(f"{structure.name}: {structure.volume_ml:.2f} mL ({structure.voxel_count} voxels)")
    if not result.report.structures:
        print("no structure found")
    for path in result.outputs.files():
        print(f"wrote {path}")
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.seconds.items())
    print(f"done in {sum(result.seconds.values()):.1f} s ({steps})")
    return 0


# ---- --bundle: a MONAI model-zoo bundle instead of a medverse checkpoint -------------------
def segment_with_bundle(args: argparse.Namespace) -> SegmentResult:
    """Segment with a MONAI bundle: its network and a plan derived from its configs.

    The image is put in the bundle's orientation (its ``Orientationd``), predicted by the
    Predictor, and the labels are mapped back onto the input grid before writing.
    """
    import dataclasses
    import time

    from medverse.inference.api import check_modality, export_labels
    from medverse.inference.predictor import Predictor
    from medverse.io.dicom import read_image
    from medverse.models.bundle import load_bundle

    start = time.perf_counter()
    model = load_bundle(args.bundle)
    image = read_image(args.input, args.series)
    check_modality(image, model.plan, args.input)
    predictor = Predictor(model, device=args.device, overlap=args.overlap, mirror_tta=args.tta)
    labels = model.restored(predictor.predict(model.oriented(image)), image)
    predicted = time.perf_counter() - start
    name = f"MONAI bundle {model.meta['bundle']}"
    result = export_labels(image, labels, args.out, algorithm_name=name, progress=True)
    return dataclasses.replace(result, seconds={"predict": predicted, **result.seconds})
