"""A Volume made ready for a model on the compute device: normalised, on the model's grid.

The plan's steps (`medverse.preprocessing.normalize.intensity_map`, then the one resampler,
linear with border padding, to the plan's spacing) done on the device: the raw voxels go to
the device once (through pinned memory on CUDA), each block is cast, clipped and normalised
just before it is interpolated, and nothing the size of the native grid is held in float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from medverse.core.registry import Modality
from medverse.core.volume import Volume
from medverse.preprocessing.normalize import IntensityMap, intensity_map
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import grid_for_spacing, resample_tensor, same_grid

Shape3 = tuple[int, int, int]

AIR_HU = -900.0
"""CT voxels at or below this (in HU, after the plan's clip) count as air for window skipping."""

MR_BACKGROUND_FRACTION = 0.05
"""MR voxels at or below this fraction of the image's 99th percentile count as background."""

_BLOCK_VOXELS = 1 << 23


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
    elif intensity.clips(raw.dtype):  # clip before interpolating, block by block
        image = resample_tensor(
            raw, volume.affine, affine, shape, order=1, padding="border", prepare=intensity.apply
        )
    else:  # no clipping: normalise each resampled float32 block (normalising is linear)
        image = resample_tensor(
            raw, volume.affine, affine, shape, order=1, padding="border",
            prepare=_as_float32, finish=intensity.apply,
        )  # fmt: skip
    threshold = background_level(raw, plan)
    skip = None if threshold is None else intensity.value(threshold)
    return ModelInput(image, affine, volume.affine, volume.shape, skip)


def raw_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """The voxels as a tensor on ``device``, no float copy (pinned on the way to CUDA).

    The tensor may be a Fortran-ordered view; `resample_tensor` reads it in that order.
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


def _as_float32(block: torch.Tensor) -> torch.Tensor:
    return block.float()


def _apply_in_blocks(raw: torch.Tensor, intensity: IntensityMap) -> torch.Tensor:
    """``intensity.apply(raw)`` as a contiguous float32 tensor, a block of slices at a time."""
    out = torch.empty(tuple(raw.shape), dtype=torch.float32, device=raw.device)
    step = max(1, _BLOCK_VOXELS // max(1, int(raw.shape[0]) * int(raw.shape[1])))
    for k0 in range(0, int(raw.shape[2]), step):
        out[..., k0 : k0 + step] = intensity.apply(raw[..., k0 : k0 + step])
    return out


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
