"""Fast linear resampling between grids that share their axis directions, block by block.

A model's grid (``grid_for_spacing``) keeps the axes of the image's native grid and only
changes the voxel size, so every native index maps to a model-grid coordinate axis by axis:
``source = scale * target + offset``. Trilinear interpolation is then three 1D linear passes
(gather two neighbours, lerp), far cheaper than a general ``grid_sample``; coordinates outside
the source clamp to its border, exactly as ``resample_tensor(..., padding="border")`` does.
Work goes in blocks of output slices so memory stays bounded for any volume size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Shape3 = tuple[int, int, int]

BLOCK_VOXELS = 1 << 23
"""Output voxels (per channel) computed at once."""


@dataclass(frozen=True)
class AxisMap:
    """Target index -> source coordinate, per axis: ``scale * index + offset``."""

    scale: tuple[float, float, float]
    offset: tuple[float, float, float]


def axis_map(source_affine: np.ndarray, target_affine: np.ndarray) -> AxisMap | None:
    """The per-axis map from target indices to source coordinates, or None if axes mix.

    Args:
        source_affine: Voxel -> mm of the grid that holds the data.
        target_affine: Voxel -> mm of the grid to fill.
    """
    mapping = np.linalg.inv(np.asarray(source_affine, np.float64)) @ np.asarray(target_affine)
    linear = mapping[:3, :3]
    diagonal = np.diag(linear)
    if not np.allclose(linear - np.diag(diagonal), 0.0, atol=1e-6) or np.any(diagonal <= 0):
        return None
    scale = (float(diagonal[0]), float(diagonal[1]), float(diagonal[2]))
    offset = (float(mapping[0, 3]), float(mapping[1, 3]), float(mapping[2, 3]))
    return AxisMap(scale, offset)


@dataclass(frozen=True)
class Taps:
    """The two source neighbours and the weight of the upper one, for each target index."""

    low: torch.Tensor
    high: torch.Tensor
    weight: torch.Tensor

    def shifted(self, start: int, stop: int, base: int) -> Taps:
        """Taps of targets ``[start, stop)`` with source indices counted from ``base``."""
        return Taps(
            self.low[start:stop] - base, self.high[start:stop] - base, self.weight[start:stop]
        )


def linear_taps(
    source_size: int, scale: float, offset: float, target_size: int, device: torch.device
) -> Taps:
    """Linear-interpolation taps along one axis (coordinates clamped to the source border)."""
    index = torch.arange(target_size, dtype=torch.float64, device=device)
    coord = (index * scale + offset).clamp(0.0, float(source_size - 1))
    low = coord.floor().clamp(max=max(source_size - 2, 0)).long()
    high = (low + 1).clamp(max=source_size - 1)
    weight = (coord - low.double()).clamp(0.0, 1.0).float()
    return Taps(low, high, weight)


def take(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(axis, index)`` by advanced indexing (several times faster on a CPU)."""
    axis = axis % x.ndim
    return x[(slice(None),) * axis + (index,)]


def lerp_axis(x: torch.Tensor, axis: int, taps: Taps) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``axis`` (negative, counted from the end)."""
    low = take(x, axis, taps.low)
    if bool((taps.high == taps.low).all()):
        return low
    high = take(x, axis, taps.high)
    shape = [1] * x.ndim
    shape[axis] = -1
    return torch.lerp(low, high, taps.weight.view(shape).to(low.dtype))


def resample_aligned(
    source: torch.Tensor,
    mapping: AxisMap,
    target_shape: Shape3,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Trilinear resampling of ``source`` (``[..., X, Y, Z]``) onto a target grid.

    A Fortran-ordered 3D source (as nibabel returns NIfTI data) is read in its own memory
    order, without a transposing copy.

    Args:
        source: Data on the source grid, any dtype (``prepare`` makes it floating).
        mapping: Target index -> source coordinate (`axis_map`).
        target_shape: Target ``(X', Y', Z')``.
        prepare: Applied to each block of source voxels before interpolation (cast, clip,
            normalise); defaults to a cast to float32.

    Returns:
        A contiguous float tensor ``[..., X', Y', Z']`` on the source's device.
    """
    prepare = prepare or (lambda block: block.float())
    if source.ndim == 3 and not source.is_contiguous():
        flipped = source.permute(2, 1, 0)
        if flipped.is_contiguous():
            reverse = AxisMap(_reversed(mapping.scale), _reversed(mapping.offset))
            target = (target_shape[2], target_shape[1], target_shape[0])
            out = _resample_blocks(flipped, reverse, target, prepare)
            return out.permute(2, 1, 0).contiguous()
    return _resample_blocks(source, mapping, target_shape, prepare)


def _resample_blocks(
    source: torch.Tensor,
    mapping: AxisMap,
    target_shape: Shape3,
    prepare: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Resample in blocks of target planes along the first spatial axis (the slowest)."""
    size = tuple(int(s) for s in source.shape[-3:])
    device = source.device
    taps = [
        linear_taps(size[a], mapping.scale[a], mapping.offset[a], target_shape[a], device)
        for a in range(3)
    ]
    lead = tuple(source.shape[:-3])
    out = torch.empty((*lead, *target_shape), dtype=torch.float32, device=device)
    plane = max(1, target_shape[1] * target_shape[2], size[1] * size[2])
    step = max(1, BLOCK_VOXELS // plane)
    for i0 in range(0, target_shape[0], step):
        i1 = min(i0 + step, target_shape[0])
        first_taps = taps[0].shifted(i0, i1, 0)
        first, last = int(first_taps.low.min()), int(first_taps.high.max()) + 1
        block = prepare(source[..., first:last, :, :])
        block = lerp_axis(block, -1, taps[2])
        block = lerp_axis(block, -2, taps[1])
        block = lerp_axis(block, -3, taps[0].shifted(i0, i1, first))
        out[..., i0:i1, :, :] = block.to(out.dtype)
    return out


def _reversed(values: tuple[float, float, float]) -> tuple[float, float, float]:
    return (values[2], values[1], values[0])
