"""Segmentation metrics per case and label (Dice, 95% Hausdorff, surface Dice) via MONAI."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

METRIC_NAMES = ("dice", "hd95", "surface_dice")


@dataclass(frozen=True)
class LabelScores:
    """Scores of one label in one case.

    Attributes:
        dice: Dice overlap in [0, 1]; 1 when both prediction and reference are empty.
        hd95: 95th-percentile symmetric Hausdorff distance in mm; 0 when both are empty,
            NaN when exactly one is empty or distances were not computed.
        surface_dice: Fraction of surface within the tolerance (normalised surface Dice);
            1 when both are empty, 0 when exactly one is, NaN when not computed.
    """

    dice: float
    hd95: float
    surface_dice: float

    def as_tuple(self) -> tuple[float, float, float]:
        """Return ``(dice, hd95, surface_dice)`` in ``METRIC_NAMES`` order."""
        return (self.dice, self.hd95, self.surface_dice)


def _mask(array: np.ndarray | torch.Tensor, value: int) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    return (tensor == value).to(torch.float32)[None, None]


def _distances(
    pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float], tolerance_mm: float
) -> tuple[float, float]:
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0, 1.0
    if has_pred != has_ref:
        return math.nan, 0.0
    spacing_list = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(
            pred, ref, include_background=True, percentile=95, spacing=spacing_list
        )
        nsd = compute_surface_dice(
            pred, ref, [tolerance_mm], include_background=True, spacing=spacing_list
        )
    return float(hd95.item()), float(nsd.item())


def case_scores(
    prediction: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    labels: Sequence[int],
    spacing: Sequence[float],
    *,
    tolerance_mm: float = 1.0,
    distances: bool = True,
) -> dict[int, LabelScores]:
    """Score a predicted label array against the reference, label by label.

    Args:
        prediction: Integer label array ``[i, j, k]``.
        reference: Integer label array on the same grid.
        labels: Label values to score (background excluded).
        spacing: Voxel size in mm along ``i, j, k``.
        tolerance_mm: Surface Dice tolerance.
        distances: Also compute HD95 and surface Dice (slower); NaN otherwise.

    Returns:
        Label value -> scores.
    """
    if tuple(prediction.shape) != tuple(reference.shape):
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ")
    scores: dict[int, LabelScores] = {}
    for value in labels:
        pred, ref = _mask(prediction, value), _mask(reference, value)
        dice = compute_dice(pred, ref, include_background=True, ignore_empty=False)
        hd95, nsd = (math.nan, math.nan)
        if distances:
            hd95, nsd = _distances(pred, ref, spacing, tolerance_mm)
        scores[int(value)] = LabelScores(float(dice.item()), hd95, nsd)
    return scores


def score_totals(cases: Sequence[Mapping[int, LabelScores]], labels: Sequence[int]) -> torch.Tensor:
    """Sum finite scores over cases: float64 ``[label, metric, (sum, count)]``.

    Totals from different processes add up (all-reduce), then ``totals_to_means`` divides.
    """
    totals = torch.zeros((len(labels), len(METRIC_NAMES), 2), dtype=torch.float64)
    for case in cases:
        for row, value in enumerate(labels):
            for col, score in enumerate(case[int(value)].as_tuple()):
                if math.isfinite(score):
                    totals[row, col, 0] += score
                    totals[row, col, 1] += 1
    return totals


def totals_to_means(
    totals: torch.Tensor, labels: Sequence[int]
) -> dict[int, dict[str, float | None]]:
    """Return label value -> ``{"<metric>_mean": mean or None}`` from ``score_totals`` sums."""
    means: dict[int, dict[str, float | None]] = {}
    for row, value in enumerate(labels):
        entry: dict[str, float | None] = {}
        for col, name in enumerate(METRIC_NAMES):
            total, count = float(totals[row, col, 0]), float(totals[row, col, 1])
            entry[f"{name}_mean"] = total / count if count > 0 else None
        means[int(value)] = entry
    return means


def mean_dice(means: Mapping[int, Mapping[str, float | None]]) -> float:
    """Average the per-label Dice means (labels without any case count as 0)."""
    if not means:
        return 0.0
    values = [m.get("dice_mean") or 0.0 for m in means.values()]
    return float(sum(values) / len(values))
