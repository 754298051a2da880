"""``medverse export``: write a checkpoint's network as an ONNX file for ONNX Runtime/TensorRT."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export",
        help="export a model checkpoint to ONNX",
        description=(
            "Export a checkpoint's network to one self-contained ONNX file (input 'image' "
            "(batch, 1, *patch_size) float32, output 'logits'; dynamic batch). The plan, labels "
            "and a SHA-256 of the weights are stored in the file's metadata, so "
            "`medverse segment --backend onnxruntime --onnx FILE` refuses a file exported "
            "from another checkpoint."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="model checkpoint (.pt)")
    parser.add_argument(
        "--onnx", type=Path, required=True, metavar="OUT", help="ONNX file to write"
    )
    parser.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "legacy"),
        default="auto",
        help="auto = torch.export-based (dynamo, opset 18) when onnxscript is installed, "
        "else the TorchScript-based legacy exporter (opset 17; also TorchScript networks)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the file once in ONNX Runtime against torch (a few seconds)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, check the file against torch, and print where it went."""
    from medverse.models.checkpoint import load_checkpoint
    from medverse.models.onnx_export import check_export, export_onnx

    model = load_checkpoint(args.checkpoint)
    path = export_onnx(model, args.onnx, exporter=args.exporter)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB, patch {tuple(model.plan.patch_size)})")
    if not args.no_check:
        difference = check_export(model, path)
        print(f"onnxruntime vs torch on one window: max |logit difference| {difference:.2e}")
    return 0
