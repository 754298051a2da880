"""Slab sinks: where blended window logits go (labels on the model grid, kept logits, ...).

`medverse.engine.native_labels.NativeLabels` is the streaming sink for labels on a native
grid; the sinks here cover the rest: labels on the model grid itself, and collecting every
logit for callers that want probabilities or grids that are not axis-aligned (those go
through the one resampler, `medverse.preprocessing.resample.resample_tensor`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from medverse.engine.windows import Slab, background_logits, channel_argmax
from medverse.preprocessing.resample import resample_tensor

Shape3 = tuple[int, int, int]

SLAB_ELEMENTS = 1 << 25
"""Largest number of interpolated values (classes x voxels) computed at once."""


def channel_values(labels: Iterable[int]) -> list[int]:
    """Network channels kept for the argmax: background 0, then the label values, ascending.

    The network predicts one channel per value up to the highest label, so channel ``v`` is
    label ``v``; channels of values the plan does not name are dropped before the softmax.
    """
    return [0, *sorted(int(v) for v in labels if int(v) != 0)]


def label_dtype(values: Sequence[int]) -> type[np.integer]:
    """uint8 when every label value fits, else uint16."""
    return np.uint8 if max(values, default=0) < 256 else np.uint16


class GridLabels:
    """Label values on the model grid itself (int64, on the slabs' device)."""

    def __init__(self, shape: Shape3, values: Sequence[int], device: torch.device) -> None:
        self.lut = torch.as_tensor(list(values), device=device)
        self.labels = torch.zeros(shape, dtype=torch.int64, device=device)

    def __call__(self, slab: Slab) -> None:
        """Argmax of the slab's logits, as label values."""
        self.labels[..., slab.start : slab.stop] = self.lut[slab.argmax().long()]

    def array(self) -> np.ndarray:
        """The labels as a numpy array of the smallest fitting dtype."""
        values = self.lut.tolist()
        return self.labels.cpu().numpy().astype(label_dtype(values))


class GridLogits:
    """Every blended logit of the model grid, ``(C, X, Y, Z)`` float32."""

    def __init__(self, channels: int, shape: Shape3, device: torch.device) -> None:
        self.logits = background_logits(channels, shape, device)

    def __call__(self, slab: Slab) -> None:
        """Store the slab."""
        slab.region(self.logits[..., slab.start : slab.stop])[...] = slab.logits


def argmax_through_grid_sample(
    probs: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Shape3,
) -> torch.Tensor:
    """Argmax channel on a target grid that is not axis-aligned with the source (slow path)."""
    out = torch.empty(target_shape, dtype=torch.int64, device=probs.device)
    for k0, k1, values in _slabs(probs, source_affine, target_affine, target_shape):
        out[..., k0:k1] = channel_argmax(values)
    return out


def _slabs(
    probs: torch.Tensor,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Shape3,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(k0, k1, values)``: the interpolated ``(C, X', Y', k1 - k0)`` of each slab."""
    per_slice = int(probs.shape[0]) * target_shape[0] * target_shape[1]
    step = max(1, SLAB_ELEMENTS // max(per_slice, 1))
    for k0 in range(0, target_shape[2], step):
        k1 = min(target_shape[2], k0 + step)
        shift = np.eye(4)
        shift[2, 3] = k0
        shape = (target_shape[0], target_shape[1], k1 - k0)
        values = resample_tensor(
            probs, source_affine, target_affine @ shift, shape, order=1, padding="border"
        )
        yield k0, k1, values
