"""``medverse segment``: segment a DICOM series or NIfTI image and write the output bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medverse.engine.cpu_isa import cpu_path_summary

if TYPE_CHECKING:
    from medverse.inference.batch import StudyOutcome


def register(subparsers: Any) -> None:
    """Add the ``segment`` command."""
    parser = subparsers.add_parser(
        "segment",
        help="segment an image with a model checkpoint",
        description=(
            "Segment a DICOM series (folder or file) or a NIfTI image with a model checkpoint. "
            "Writes labels.nii.gz, seg.dcm (DICOM input only), meshes.glb, report.json and "
            "overview.png into --out; on failure --out is left as it was. With --many, INPUT is "
            "a folder of studies and each gets OUT/<study>/."
        ),
    )
    parser.add_argument(
        "input", type=Path, help="DICOM folder or file, .nii/.nii.gz image, or (--many) a folder"
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="model checkpoint (.pt)")
    model.add_argument(  # a folder: medverse.inference.loading.load_model reads it as a bundle
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
        "--volume",
        metavar="K",
        type=int,
        default=None,
        help="of a multi-volume DICOM series (phases, echoes, b-values, Siemens mosaics), "
        "segment volume K (1-based, as `medverse info` lists them); without it such a series "
        "is refused before inference, naming its volumes",
    )
    parser.add_argument(
        "--seg-type",
        choices=("labelmap", "binary"),
        default="labelmap",
        help="DICOM SEG encoding: labelmap (default; one frame per slice, DICOM 2024b) or "
        "binary (one frame per slice and structure, larger; for viewers that predate "
        "LABELMAP)",
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
    add_speed_options(parser)
    add_spatial_options(parser)
    parser.set_defaults(func=run)


def add_spatial_options(parser: argparse.ArgumentParser) -> None:
    """``--spatial-parallel N``: the whole volume at once, split across N local processes."""
    spatial = parser.add_argument_group("whole-volume inference")
    spatial.add_argument(
        "--spatial-parallel",
        type=int,
        metavar="N",
        help="one window covering the whole image (on the model grid, padded to the network's "
        "stride) instead of sliding windows, split along its longest axis over N local "
        "processes that exchange halos at every layer (gloo on the CPU; NCCL with N GPUs); "
        "each process holds about 1/N of the activations. 1 = whole volume in this "
        "process. Same outputs as without it; --overlap and --batch-size do not apply",
    )
    spatial.add_argument(
        "--spatial-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --spatial-parallel: give up after S seconds (default 3600); a process that "
        "dies stops the run within seconds",
    )


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """Backend, precision, batching and window-skipping options, each with its cost."""
    speed = parser.add_argument_group("speed (each option states its cost)")
    speed.add_argument(
        "--skip-air",
        action="store_true",
        help="skip windows holding only air/background, decided on the normalised image: CT "
        "voxels at or below -900 HU (after the model's clip), MR voxels at or below 5%% of the "
        "99th percentile. The other windows keep their places, so every voxel that is not air "
        "gets the same label as without it; air voxels in no remaining window become "
        "background. Saves the windows outside the body (none for a body that fills the field "
        "of view)",
    )
    speed.add_argument(
        "--coarse-first",
        action="store_true",
        help="per z-band, run a covering subset of the windows first (at overlap 0.5: 9 of 25 "
        "on a 273x273 grid) and each other window only if that first pass is not background "
        "by 3 logits everywhere in its box; a skipped window's voxels keep the first pass's "
        "background. Saves only windows far from any structure at overlap 0.5 (none at 0.25; "
        "none on the tight field of view of the example abdominal CT), at the cost of a "
        "partly filled batch per band",
    )
    speed.add_argument(
        "--backend",
        choices=("auto", "torch", "compile", "onnxruntime", "openvino"),
        default="auto",
        help=f"auto (default) = the fastest measured path for the device and CPU: torch on "
        f"CUDA, else openvino, onnxruntime or torch, whichever is installed first (here: "
        f"{cpu_path_summary()}); openvino/onnxruntime run the exported float32 graph, about 2x "
        "/ 1.2x torch's CPU speed on a 3D UNet (openvino's export: once per model, tens of "
        "seconds, cached in ~/.cache/medverse/onnx); compile = torch.compile (about a minute "
        "of compiling first; meant for many studies on a GPU); with --onnx: onnxruntime",
    )
    speed.add_argument(
        "--onnx", type=Path, metavar="FILE", help="ONNX file from `medverse export` (onnxruntime)"
    )
    speed.add_argument(
        "--provider",
        choices=("cpu", "cuda", "tensorrt"),
        help="onnxruntime provider (default: cuda on a GPU, else cpu); tensorrt builds an "
        "fp16 engine once (minutes), cached in ~/.cache/medverse/tensorrt",
    )
    speed.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        default="auto",
        help="network arithmetic: auto = bf16/fp16 on CUDA, float32 on a CPU; bf16 on a CPU "
        "with AVX512-BF16/AMX is about 2x faster and its labels agree with float32 on >= "
        "99.9%% of voxels (parity tests); fp16 is CUDA only; int8 (CPU, openvino + nncf): "
        "quantised on the first run's first 12 windows (calibrating costs seconds once; "
        "cached per model), kept only if its labels agree with float32 there (>= 99.5%% of "
        "voxels), else float32 runs and the log says so; about 0.75x float32's CPU time per "
        "window on AVX2, labels ~0.999 of voxels / foreground Dice ~0.98 vs float32",
    )
    speed.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="windows per network call (default 8 on CUDA; on a CPU one per thread, each "
        "window on its own core); more needs more memory",
    )
    speed.add_argument(
        "--many",
        action="store_true",
        help="INPUT is a folder of studies (each .nii/.nii.gz file or subfolder is one): the "
        "next study is read while one runs and windows of consecutive studies share batches; "
        "memory holds about two studies at once",
    )
    speed.add_argument(
        "--labels-only",
        action="store_true",
        help="with --many: write only labels.nii.gz per study (no SEG, meshes, report, "
        "overview; these take seconds per study)",
    )


def speed_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Predictor options of the command line, as keywords of `segment`/`segment_folder`."""
    return {
        "device": args.device,
        "overlap": args.overlap,
        "mirror_tta": args.tta,
        "backend": args.backend,
        "precision": args.precision,
        "skip_background": args.skip_air,
        "coarse_first": args.coarse_first,
        "sw_batch_size": args.batch_size,
        "onnx_path": args.onnx,
        "provider": args.provider,
    }


def run(args: argparse.Namespace) -> int:
    """Run the segmentation and print where the files went."""
    from medverse.inference.api import segment

    if args.many:
        return run_many(args)
    result = segment(
        args.input,
        series_uid=args.series,
        volume=args.volume,
        spatial_parallel=args.spatial_parallel,
        spatial_timeout_s=args.spatial_timeout,
        **_shared_options(args),
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


def run_many(args: argparse.Namespace) -> int:
    """``--many``: segment every study of a folder; exit code 1 if any study failed."""
    from medverse.core.errors import ConfigError
    from medverse.inference.api import segment_folder

    if args.spatial_parallel is not None:
        raise ConfigError("--spatial-parallel segments one image; it does not combine with --many")
    outcomes = segment_folder(
        args.input, labels_only=args.labels_only, on_done=_print_outcome, **_shared_options(args)
    )
    failed = [o for o in outcomes if o.error is not None]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} studies segmented")
    return 1 if failed else 0


def _shared_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords `segment` and `segment_folder` both take: model, output, SEG type, speed."""
    return {
        "model_path": args.model or args.bundle,
        "out_dir": args.out,
        "seg_type": args.seg_type,
        **speed_options(args),
    }


def _print_outcome(outcome: StudyOutcome) -> None:
    if outcome.error is not None:
        print(f"failed {outcome.error}")
    else:
        print(f"wrote {outcome.out_dir} ({outcome.finished:.1f} s)")
