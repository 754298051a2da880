"""Intensity normalisation from a plan: one arithmetic for numpy and torch (MONAI-free).

The plan's normalisation is ``(clip(x, low, high) - shift) / scale`` computed in float64 and
rounded to float32 (`IntensityMap`); `intensity_map` finds its numbers (the plan's for
``ct_window``, the image's own for ``zscore``). Training (numpy or torch) and inference (block
by block on the device) both go through it, so a voxel gets the very float32 value everywhere.
Its MONAI wrappers for training chains are in `medverse.preprocessing.transforms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from medverse.preprocessing.plan import Normalization, Plan

EPS = 1e-8
"""Smallest scale: a constant image becomes zeros instead of dividing by zero."""

EXACT_STATS_VOXELS = 1 << 26
"""Largest tensor (voxels) whose z-score statistics numpy computes on a float64 copy."""

STATS_SLICES = 64
"""Slices summed at once for the statistics of larger tensors (or tensors on a GPU)."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class IntensityMap:
    """``(clip(x, low, high) - shift) / scale``: the plan's normalisation with its numbers."""

    low: float | None
    high: float | None
    shift: float
    scale: float

    def apply(self, x: ArrayT) -> ArrayT:
        """Clip and normalise in float64, then round to float32 (numpy in, numpy out)."""
        if isinstance(x, torch.Tensor):
            t = x.double()
            if self.low is not None or self.high is not None:
                t = t.clamp(min=self.low, max=self.high)
            return ((t - self.shift) / self.scale).float()
        a = np.asarray(x, dtype=np.float64)
        if self.low is not None or self.high is not None:
            a = np.clip(a, self.low, self.high)
        return ((a - self.shift) / self.scale).astype(np.float32)

    def clips(self, dtype: torch.dtype) -> bool:
        """False when no value of ``dtype`` lies outside the clip range (clipping is a no-op)."""
        if self.low is None and self.high is None:
            return False
        if dtype.is_floating_point:
            return True
        info = torch.iinfo(dtype)
        low_ok = self.low is None or self.low <= info.min
        high_ok = self.high is None or self.high >= info.max
        return not (low_ok and high_ok)

    def value(self, raw: float) -> float:
        """The normalised value of one raw intensity."""
        return float(self.apply(np.asarray([raw], dtype=np.float64))[0])


def intensity_map(array: np.ndarray | torch.Tensor, plan: Plan) -> IntensityMap:
    """The plan's normalisation as numbers: fixed for ``ct_window``, this image's for ``zscore``.

    ``zscore`` statistics are those of the clipped image in float64, computed by numpy on a
    float64 copy for numpy arrays and for CPU tensors of up to `EXACT_STATS_VOXELS`; beyond
    that (or on a GPU) slab by slab on the tensor's device, equal up to rounding without a
    float64 copy of the whole image.

    Args:
        array: One channel of voxels, any shape, any integer or float dtype.
        plan: The dataset plan.
    """
    low, high = plan.clip_low, plan.clip_high
    if plan.normalization == Normalization.CT_WINDOW:
        return IntensityMap(low, high, float(plan.mean or 0.0), max(float(plan.std or 1.0), EPS))
    if isinstance(array, torch.Tensor):
        if array.device.type != "cpu" or array.numel() > EXACT_STATS_VOXELS:
            mean, std = _slab_statistics(array, low, high)
            return IntensityMap(low, high, mean, max(std, EPS))
        array = torch.Tensor.numpy(array.detach())
    x = np.asarray(array, dtype=np.float64)
    if low is not None or high is not None:
        x = np.clip(x, low, high)
    return IntensityMap(low, high, float(x.mean()), max(float(x.std()), EPS))


def _slab_statistics(
    tensor: torch.Tensor, low: float | None, high: float | None
) -> tuple[float, float]:
    """Mean and (population) std of the clipped tensor, summed in float64 slab by slab."""
    total = squares = 0.0
    count = tensor.numel()
    for k0 in range(0, int(tensor.shape[-1]), STATS_SLICES):
        block = tensor[..., k0 : k0 + STATS_SLICES].double()
        if low is not None or high is not None:
            block = block.clamp(min=low, max=high)
        total += float(block.sum())
        squares += float((block * block).sum())
    mean = total / max(count, 1)
    variance = max(squares / max(count, 1) - mean * mean, 0.0)
    return mean, float(np.sqrt(variance))


def normalize_intensity(array: ArrayT, plan: Plan) -> ArrayT:
    """Normalise intensities as the plan says; returns float32 of the same kind (numpy/torch).

    ``ct_window``: clip to ``[clip_low, clip_high]``, then ``(x - mean) / std`` with the
    plan's fixed dataset statistics. ``zscore``: clip if the plan has clip values, then
    subtract this array's own mean and divide by its own std. A constant array becomes zeros.

    Args:
        array: One channel of voxels, any shape (e.g. ``[i, j, k]`` or ``[1, i, j, k]``).
        plan: The dataset plan.
    """
    return intensity_map(array, plan).apply(array)
