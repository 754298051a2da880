"""Linear-interpolation taps between grids that share their axis directions, axis by axis.

A model's grid (``grid_for_spacing``) keeps the axes of the image's native grid and only
changes the voxel size, so every index of one grid maps to a coordinate of the other axis by
axis: ``source = scale * target + offset`` (`axis_map`). Trilinear interpolation is then three
1D passes, each gathering two neighbours and lerping (`linear_taps`, `lerp_axis`);
coordinates outside the source clamp to its border. The one resampler
(`medverse.preprocessing.resample.resample_tensor`) and the engine's streamed native labels
are built on these taps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Shape3 = tuple[int, int, int]

BLOCK_VOXELS = 1 << 23
"""Output voxels (per channel) computed at once by the block-wise users of the taps."""


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


_NUMPY_TAKE = (torch.float32, torch.float64, torch.uint8, torch.int16, torch.int32, torch.int64)


def take(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(axis, index)``, the same values, by the fastest gather for the case.

    On a CPU, along any axis but the first, numpy's ``take`` (2-4x torch's advanced indexing,
    which is itself several times ``index_select`` there); elsewhere advanced indexing.
    """
    axis = axis % x.ndim
    if axis and x.device.type == "cpu" and x.dtype in _NUMPY_TAKE and not x.requires_grad:
        return torch.from_numpy(np.take(x.numpy(), index.numpy(), axis))
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
