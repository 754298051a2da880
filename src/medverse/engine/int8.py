"""int8 post-training quantisation of the OpenVINO network, calibrated on a study's own windows.

NNCF quantises the exported float32 graph (its MIXED preset: per-channel symmetric int8
weights, per-tensor asymmetric int8 activations; fast bias correction) from the first windows
a run computes in float32; the int8 network's labels are then checked against float32 on
other windows of the same run. It is kept (and cached beside the ONNX export) only if they
agree on at least `AGREEMENT_FLOOR` of the voxels and the foreground overlaps to at least
`DICE_FLOOR`; otherwise the verdict is cached too and the network stays float32.

Measured on a 2-core AVX2-only AMD EPYC (no VNNI) with the brief's UNet (16-256, 96^3,
float32 vs int8, one core): 0.20 vs 0.15 CPU s per window. OpenVINO runs the convolutions in
int8 there; its transposed convolutions stay float32 on AVX2.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medverse.core.errors import ModelError
from medverse.io.atomic import atomic_path

NNCF_INSTALL = "pip install nncf==3.4.0"

CALIBRATION_WINDOWS = 12
"""Windows collected in float32 first: every other one calibrates, the rest check."""

AGREEMENT_FLOOR = 0.995
"""Least voxel agreement (argmax, int8 vs float32) on the check windows to keep int8."""

DICE_FLOOR = 0.80
"""Least Dice of the foreground (any label > 0) between int8 and float32 on the check windows.

Window by window, before blending, so lower than the blended labels' own: with the shipped
CT model the check windows gave 0.83-0.87 (agreement 0.996-0.997) where the labels of whole
studies then agreed with float32 torch eager on 0.998-0.999 of voxels, foreground Dice
0.97-0.98 (512x512x300 CT and the 3 mm example CT)."""


@dataclass(frozen=True)
class Int8Verdict:
    """How the int8 network compared with float32 on its check windows.

    Attributes:
        agreement: Fraction of voxels with the same argmax.
        foreground_dice: Dice of "label > 0" between the two.
        windows: Check windows compared.
        kept: True if both figures met their floors (int8 runs), else float32 runs.
    """

    agreement: float
    foreground_dice: float
    windows: int
    kept: bool

    def describe(self) -> str:
        """E.g. ``int8 kept: agreement 0.99912, foreground Dice 0.991 on 6 windows``."""
        verdict = "kept" if self.kept else "not kept (float32 runs)"
        return (
            f"int8 {verdict}: agreement {self.agreement:.5f}, foreground Dice "
            f"{self.foreground_dice:.3f} on {self.windows} windows vs float32"
        )


def int8_paths(onnx: Path) -> tuple[Path, Path]:
    """The int8 IR (``.xml``, weights beside it in ``.bin``) and its verdict file for ``onnx``."""
    stem = onnx.with_suffix("")
    return stem.with_name(stem.name + "-int8.xml"), stem.with_name(stem.name + "-int8.json")


def cached_verdict(onnx: Path) -> Int8Verdict | None:
    """The stored verdict for ``onnx``'s int8 network, or None if none was made (or unreadable)."""
    xml, verdict = int8_paths(onnx)
    try:
        found = Int8Verdict(**json.loads(verdict.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return found if (xml.exists() or not found.kept) else None


def compare_labels(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """``(voxel agreement, foreground Dice)`` of two label arrays of one shape."""
    agreement = float((reference == candidate).mean())
    ref_fg, cand_fg = reference > 0, candidate > 0
    total = int(ref_fg.sum()) + int(cand_fg.sum())
    dice = 1.0 if total == 0 else 2.0 * float((ref_fg & cand_fg).sum()) / total
    return agreement, dice


def quantize_and_check(
    network: Any, windows: list[np.ndarray], labels: list[np.ndarray], run: Any
) -> tuple[Any, Int8Verdict]:
    """Quantise ``network`` on the even windows and check it on the odd ones.

    Args:
        network: The float32 ``openvino.Model`` (reshaped to one window).
        windows: ``(1, 1, *roi)`` float32 inputs, in the order they ran.
        labels: The float32 network's argmax of each window (``roi``-shaped).
        run: Callable mapping an ``openvino.Model`` and an input window to its argmax labels.

    Returns:
        The int8 ``openvino.Model`` and its verdict.

    Raises:
        ModelError: If nncf is not installed.
    """
    nncf = _nncf()
    calibration = windows[0::2]
    quantized = nncf.quantize(
        network,
        nncf.Dataset(calibration),
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED,
        fast_bias_correction=True,
    )
    reference = np.stack(labels[1::2])
    candidate = np.stack(run(quantized, windows[1::2]))
    agreement, dice = compare_labels(reference, candidate)
    kept = agreement >= AGREEMENT_FLOOR and dice >= DICE_FLOOR
    return quantized, Int8Verdict(agreement, dice, len(reference), kept)


def save_int8(onnx: Path, network: Any, verdict: Int8Verdict) -> None:
    """Cache the int8 IR (when kept) and the verdict beside ``onnx``."""
    ov = importlib.import_module("openvino")
    xml, verdict_path = int8_paths(onnx)
    if verdict.kept:
        # the weights land before the .xml that names them
        with atomic_path(xml) as xml_tmp, atomic_path(xml.with_suffix(".bin")) as bin_tmp:
            ov.save_model(network, str(xml_tmp), compress_to_fp16=False)
            Path(xml_tmp).with_suffix(".bin").replace(bin_tmp)
    with atomic_path(verdict_path) as tmp:
        Path(tmp).write_text(json.dumps(asdict(verdict)))


def _nncf() -> Any:
    try:
        return importlib.import_module("nncf")
    except ModuleNotFoundError:
        raise ModelError(f"int8 needs nncf; install it with: {NNCF_INSTALL}") from None
