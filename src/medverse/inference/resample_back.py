"""Class probabilities from the model's grid back to the image's native grid, slab by slab.

Probabilities are interpolated linearly, never labels: the argmax of interpolated
probabilities gives smoother, more faithful boundaries than nearest-neighbour resampling of an
argmax. The native grid is filled in slabs of ``k`` slices, each slab being a grid of its own
(the native affine shifted by the slab's first slice), so memory stays bounded whatever the
number of classes; all work stays on the probabilities' device.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from medverse.preprocessing.resample import resample_tensor

SLAB_ELEMENTS = 2**25
"""Largest number of interpolated values (classes x voxels) computed at once."""


def argmax_on_grid(
    probs: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
) -> torch.Tensor:
    """Interpolate ``probs`` (C, X, Y, Z) onto the target grid and return the argmax channel.

    Args:
        probs: Class probabilities on the source grid, float, on any device.
        source_affine: Voxel -> RAS mm of the source grid.
        target_affine: Voxel -> RAS mm of the target grid.
        target_shape: Target grid size.

    Returns:
        Channel indices ``(X', Y', Z')`` as int64 on the same device as ``probs``.
    """
    out = torch.empty(target_shape, dtype=torch.int64, device=probs.device)
    for k0, k1, values in _slabs(probs, source_affine, target_affine, target_shape):
        out[:, :, k0:k1] = values.argmax(dim=0)
    return out


def probabilities_on_grid(
    probs: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
) -> torch.Tensor:
    """Interpolate ``probs`` (C, X, Y, Z) onto the target grid; returns ``(C, X', Y', Z')``."""
    out = torch.empty((probs.shape[0], *target_shape), dtype=probs.dtype, device=probs.device)
    for k0, k1, values in _slabs(probs, source_affine, target_affine, target_shape):
        out[:, :, :, k0:k1] = values
    return out


def _slabs(
    probs: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(k0, k1, values)``: the interpolated ``(C, X', Y', k1 - k0)`` of each slab."""
    per_slice = int(probs.shape[0]) * target_shape[0] * target_shape[1]
    step = max(1, SLAB_ELEMENTS // max(per_slice, 1))
    for k0 in range(0, target_shape[2], step):
        k1 = min(target_shape[2], k0 + step)
        shift = np.eye(4)
        shift[2, 3] = k0
        slab_shape = (target_shape[0], target_shape[1], k1 - k0)
        values = resample_tensor(
            probs, source_affine, target_affine @ shift, slab_shape, order=1, padding="border"
        )
        yield k0, k1, values
