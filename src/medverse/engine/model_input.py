"""A Volume made ready for a model on the compute device: normalised, on the model's grid.

The same steps as `medverse.preprocessing` (the plan's clip and normalisation, then linear
resampling with border padding to the plan's spacing), fused and done block by block on the
device: the raw voxels go to the device once (through pinned memory on CUDA), each block is
cast, clipped and normalised just before it is interpolated, and nothing the size of the
native grid is ever held in float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from medverse.core.registry import Modality
from medverse.core.volume import Volume
from medverse.preprocessing.normalize import EPS
from medverse.preprocessing.plan import Normalization, Plan
from medverse.preprocessing.regrid import axis_map, resample_aligned
from medverse.preprocessing.resample import grid_for_spacing, resample_tensor, same_grid

Shape3 = tuple[int, int, int]

AIR_HU = -900.0
"""CT voxels at or below this (in HU, after the plan's clip) count as air for window skipping."""

MR_BACKGROUND_FRACTION = 0.05
"""MR voxels at or below this fraction of the image's 99th percentile count as background."""

EXACT_STATS_VOXELS = 1 << 26
"""Largest image (voxels) whose z-score statistics numpy computes on a float64 copy."""

_STATS_SLICES = 64
_BLOCK_VOXELS = 1 << 23


@dataclass(frozen=True)
class IntensityMap:
    """``(clip(x, low, high) - shift) / scale``: the plan's normalisation with its numbers."""

    low: float | None
    high: float | None
    shift: float
    scale: float

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Clip and normalise in float64, then round to float32.

        The same arithmetic as `medverse.preprocessing.normalize.normalize_intensity`, so a
        voxel gets the very float32 value training saw (an argmax near a tie stays put).
        """
        x = x.double()
        if self.low is not None or self.high is not None:
            x = x.clamp(min=self.low, max=self.high)
        return ((x - self.shift) / self.scale).float()

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
        return float(self.apply(torch.tensor([raw], dtype=torch.float64))[0])


@dataclass
class ModelInput:
    """An image ready for the windows, and the grids it goes between.

    Attributes:
        image: ``(X, Y, Z)`` float32, normalised, on the model grid, on the device.
        affine: The model grid's affine.
        native_affine: The input Volume's affine.
        native_shape: The input Volume's shape.
        skip_below: Normalised value at or below which a voxel is background (air), or None
            when the modality has no such notion.
    """

    image: torch.Tensor
    affine: np.ndarray
    native_affine: np.ndarray
    native_shape: Shape3
    skip_below: float | None

    @property
    def shape(self) -> Shape3:
        """The model grid's shape."""
        s = self.image.shape
        return (int(s[0]), int(s[1]), int(s[2]))


def prepare_volume(volume: Volume, plan: Plan, device: torch.device) -> ModelInput:
    """Normalise ``volume`` as ``plan`` says and resample it to the plan's spacing.

    Args:
        volume: The image on its native grid (any integer or float dtype).
        plan: The model's preprocessing plan.
        device: Where the work and the result go.
    """
    raw = raw_tensor(volume.array, device)
    intensity = intensity_map(raw, plan)
    spacing = tuple(float(s) for s in plan.target_spacing)
    affine, shape = grid_for_spacing(volume.affine, volume.shape, spacing)
    if same_grid(affine, shape, volume.affine, volume.shape):
        image = _apply_in_blocks(raw, intensity)
    elif (mapping := axis_map(volume.affine, affine)) is not None and intensity.clips(raw.dtype):
        image = resample_aligned(raw, mapping, shape, prepare=intensity.apply)
    elif mapping is not None:  # no clipping: normalise after resampling (it is linear)
        image = intensity.apply(resample_aligned(raw, mapping, shape))
    else:  # not reached for grids from grid_for_spacing; kept for safety
        image = resample_tensor(intensity.apply(raw), volume.affine, affine, shape, order=1)
    threshold = background_level(raw, plan)
    skip = None if threshold is None else intensity.value(threshold)
    return ModelInput(image, affine, volume.affine, volume.shape, skip)


def raw_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """The voxels as a tensor on ``device``, no float copy (pinned on the way to CUDA).

    The tensor may be a Fortran-ordered view; `resample_aligned` reads it in that order.
    """
    array = np.asarray(array)
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    elif array.dtype.kind == "u" and array.itemsize > 1:
        array = array.astype(np.int32 if array.itemsize == 2 else np.int64)
    elif array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    with warnings.catch_warnings():  # read-only memory maps are only read
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(array)  # Fortran order (nibabel) kept: no transposing copy
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _apply_in_blocks(raw: torch.Tensor, intensity: IntensityMap) -> torch.Tensor:
    """``intensity.apply(raw)`` as a contiguous float32 tensor, a block of slices at a time."""
    out = torch.empty(tuple(raw.shape), dtype=torch.float32, device=raw.device)
    step = max(1, _BLOCK_VOXELS // max(1, int(raw.shape[0]) * int(raw.shape[1])))
    for k0 in range(0, int(raw.shape[2]), step):
        out[..., k0 : k0 + step] = intensity.apply(raw[..., k0 : k0 + step])
    return out


def intensity_map(raw: torch.Tensor, plan: Plan) -> IntensityMap:
    """The plan's normalisation as numbers: fixed for ``ct_window``, this image's for ``zscore``.

    ``zscore`` statistics are those of the clipped image in float64: computed by numpy
    exactly as `medverse.preprocessing.normalize.normalize_intensity` does (bit for bit) for
    images of up to `EXACT_STATS_VOXELS` on the CPU, slab by slab beyond (equal up to
    rounding, without a float64 copy of the whole image).
    """
    low, high = plan.clip_low, plan.clip_high
    if plan.normalization == Normalization.CT_WINDOW:
        return IntensityMap(low, high, float(plan.mean or 0.0), max(float(plan.std or 1.0), EPS))
    if raw.device.type == "cpu" and raw.numel() <= EXACT_STATS_VOXELS:
        x = raw.numpy().astype(np.float64)
        if low is not None or high is not None:
            x = np.clip(x, low, high)
        return IntensityMap(low, high, float(x.mean()), max(float(x.std()), EPS))
    total = squares = 0.0
    count = raw.numel()
    for k0 in range(0, int(raw.shape[-1]), _STATS_SLICES):
        block = raw[..., k0 : k0 + _STATS_SLICES].double()
        if low is not None or high is not None:
            block = block.clamp(min=low, max=high)
        total += float(block.sum())
        squares += float((block * block).sum())
    mean = total / max(count, 1)
    variance = max(squares / max(count, 1) - mean * mean, 0.0)
    return IntensityMap(low, high, mean, max(float(np.sqrt(variance)), EPS))


def background_level(raw: torch.Tensor, plan: Plan) -> float | None:
    """Raw intensity at or below which a voxel is air/background for this modality.

    CT: `AIR_HU`. MR: `MR_BACKGROUND_FRACTION` of the 99th percentile (of every 7th voxel).
    Other modalities: None (no window is ever skipped).
    """
    if plan.modality == Modality.CT:
        return AIR_HU
    if plan.modality == Modality.MR:
        sample = raw.reshape(-1)[::7].float()
        return MR_BACKGROUND_FRACTION * float(torch.quantile(sample[: 1 << 24], 0.99))
    return None
