"""Labels on the native grid from model-grid logit slabs, streamed in z, exact and cheap.

The label of a native voxel is the argmax of the class probabilities interpolated (trilinear)
from the model grid. Where the 8 model-grid voxels around it share one argmax ``c``, every
convex combination of their probabilities has argmax ``c`` too, so the label is known without
interpolating; only voxels in cells that straddle a boundary are interpolated. Native slices
are produced as soon as the model-grid slices they need have arrived, so neither the native
probabilities nor the full model-grid probabilities are ever held.

Logits stay as the slabs bring them (class-first); only the 8 corners of boundary voxels are
gathered and put through the softmax. Labels are gathered z-major, so native slabs are
contiguous and copy straight into the Fortran-ordered (NIfTI's order) output array.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.nn import functional

from medverse.engine.windows import EMPTY_LOGIT, Slab, channel_argmax
from medverse.preprocessing.taps import (
    BLOCK_VOXELS,
    AxisMap,
    Taps,
    lerp_axis,
    linear_taps,
    take,
)

Shape3 = tuple[int, int, int]

BOUNDARY_CHUNK = 1 << 20
"""Boundary voxels interpolated at once."""

FLAG = 128
"""Bit that marks a mixed cell in a gathered channel index (for fewer than 128 channels)."""

FILL_THREADS = 4
"""Most threads that fill blocks of native slices at once on a CPU (at most one per core)."""

DENSE_FRACTION = 0.25
"""Above this fraction of boundary voxels in a block, interpolating everything is cheaper."""


class NativeLabels:
    """A slab sink that fills a native-grid label array (axis-aligned grids only).

    Args:
        model_shape: Shape of the model grid the slabs cover.
        native_shape: Shape of the native grid to fill.
        mapping: Native index -> model-grid coordinate (`medverse.preprocessing.taps.axis_map`).
        values: Label value of each channel (channel 0 is background, value 0).
        device: Where the work happens (the slabs' device).
    """

    def __init__(
        self,
        model_shape: Shape3,
        native_shape: Shape3,
        mapping: AxisMap,
        values: Sequence[int],
        device: torch.device,
    ) -> None:
        self.model_shape = model_shape
        self.native_shape = native_shape
        self.device = device
        self.taps = [
            linear_taps(
                model_shape[a], mapping.scale[a], mapping.offset[a], native_shape[a], device
            )
            for a in range(3)
        ]
        dtype = np.uint8 if max(values) < 256 else np.uint16
        self.lut = np.asarray(list(values), dtype=dtype)
        self.identity = list(values) == list(range(len(values)))
        # Fortran order: slabs along z are contiguous, and NIfTI writes it without a transpose
        self.labels = np.zeros(native_shape, dtype=dtype, order="F")
        self._next = 0
        self._slabs: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # start, logits, argmax
        self._corner = (0, 0)  # where the stored logits sit in the plane
        self._rim = False  # whether they carry a one-voxel background rim

    def __call__(self, slab: Slab) -> None:
        """Take the next slab (in z order) and fill every native slice it completes."""
        argmax = slab.argmax().permute(2, 1, 0).contiguous()  # (z, y, x), whole plane
        logits = slab.logits.float()
        self._corner, self._rim = slab.corner, slab.plane is not None
        if self._rim:  # a background rim, so corners outside the box clamp to it
            logits = functional.pad(logits, (0, 0, 1, 1, 1, 1), value=EMPTY_LOGIT)
            logits[0, [0, -1]] = 0.0
            logits[0, :, [0, -1]] = 0.0
            self._corner = (slab.corner[0] - 1, slab.corner[1] - 1)
        self._slabs.append((slab.start, logits, argmax))
        final = slab.stop >= self.model_shape[2]
        high = self.taps[2].high
        stop = self._next
        while stop < self.native_shape[2] and (final or int(high[stop]) < slab.stop):
            stop += 1
        self._fill(self._next, stop)
        self._next = stop
        self._drop_unneeded()

    def _fill(self, start: int, stop: int) -> None:
        """Fill native slices ``[start, stop)`` block by block (CPU: blocks on several threads).

        Each block reads the stored slabs and writes its own slices, so the blocks run in
        parallel (one intra-op thread each) and give the same labels as one after another.
        """
        plane = max(1, self.native_shape[0] * self.native_shape[1])
        step = max(1, BLOCK_VOXELS // plane)
        spans = [(k0, min(k0 + step, stop)) for k0 in range(start, stop, step)]
        threads = min(FILL_THREADS, os.cpu_count() or 1, len(spans))
        if self.device.type != "cpu" or threads < 2:
            for span in spans:
                self._fill_block(span)
            return
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            list(pool.map(self._fill_block, spans))  # list(): a block's error is raised here

    def _fill_block(self, span: tuple[int, int]) -> None:
        k0, k1 = span
        zyx = self._native_channels(k0, k1).cpu().numpy()
        values = zyx if self.identity else self.lut[zyx]
        self.labels[:, :, k0:k1] = values.T  # both Fortran-ordered: a plain copy

    def _native_channels(self, k0: int, k1: int) -> torch.Tensor:
        """Channel index of native slices ``[k0, k1)``, laid out ``(z, y, x)``."""
        tx, ty, tz = self.taps[0], self.taps[1], self.taps[2].shifted(k0, k1, 0)
        first, last = int(tz.low.min()), int(tz.high.max()) + 1
        tz = Taps(tz.low - first, tz.high - first, tz.weight)
        argmax = self._model_slices(first, last, logits=False)
        uniform = _uniform_cells(argmax)
        classes = int(self._slabs[0][1].shape[0])
        if classes <= FLAG:  # one gather: the mixed-cell flag rides in bit 7
            coded = _gather(argmax | ((1 - uniform) * FLAG), tz.low, ty.low, tx.low)
            mixed, channels = coded >= FLAG, coded & (FLAG - 1)
        else:
            channels = _gather(argmax, tz.low, ty.low, tx.low)
            mixed = _gather(uniform, tz.low, ty.low, tx.low) == 0
        count = int(torch.count_nonzero(mixed))
        if not count:
            return channels
        logits = self._model_slices(first, last, logits=True)  # (C, x, y, z) at self._corner
        if count > DENSE_FRACTION * mixed.numel():  # boundaries everywhere: interpolate all
            rim = int(self._rim)
            inner = logits[:, rim : logits.shape[1] - rim, rim : logits.shape[2] - rim]
            corner = (self._corner[0] + rim, self._corner[1] + rim)
            full = Slab(0, inner, corner, (self.model_shape[0], self.model_shape[1])).full()
            probs = torch.softmax(full, dim=0)
            dense = lerp_axis(lerp_axis(lerp_axis(probs, 1, tx), 2, ty), 3, tz)
            return channel_argmax(dense).permute(2, 1, 0).contiguous().to(channels.dtype)
        where = mixed.nonzero()
        for n0 in range(0, count, BOUNDARY_CHUNK):
            k, j, i = where[n0 : n0 + BOUNDARY_CHUNK].unbind(1)
            probs = _trilinear_at(logits, self._corner, (i, j, k), (tx, ty, tz))
            channels[k, j, i] = probs.argmax(dim=1).to(channels.dtype)
        return channels

    def _model_slices(self, first: int, last: int, *, logits: bool) -> torch.Tensor:
        """Model-grid slices ``[first, last)``: logits ``(C, x, y, z)`` or argmax ``(z, y, x)``."""
        pieces = []
        for start, slab_logits, argmax in self._slabs:
            stop = start + int(argmax.shape[0])
            a, b = max(first, start) - start, min(last, stop) - start
            if b > a:
                pieces.append(slab_logits[..., a:b] if logits else argmax[a:b])
        if len(pieces) == 1:
            return pieces[0]
        return torch.cat(pieces, dim=-1 if logits else 0)

    def _drop_unneeded(self) -> None:
        """Forget model-grid slabs no later native slice reads."""
        if self._next >= self.native_shape[2]:
            self._slabs = []
            return
        keep_from = int(self.taps[2].low[self._next])
        self._slabs = [s for s in self._slabs if s[0] + int(s[2].shape[0]) > keep_from]


def _uniform_cells(argmax: torch.Tensor) -> torch.Tensor:
    """1 where the 2x2x2 cell starting at a voxel holds one label (edges repeat), else 0."""
    high, low = argmax, argmax
    for axis in range(3):
        high = torch.maximum(high, _next_along(high, axis))
        low = torch.minimum(low, _next_along(low, axis))
    return (high == low).to(argmax.dtype)


def _next_along(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` shifted by one voxel towards lower indices along ``axis``; the last one repeats."""
    n = x.shape[axis]
    if n == 1:
        return x
    return torch.cat([x.narrow(axis, 1, n - 1), x.narrow(axis, n - 1, 1)], axis)


def _gather(x: torch.Tensor, k: torch.Tensor, j: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """``x[k][:, j][:, :, i]`` of a 3D tensor, as three separable gathers (`take`)."""
    return take(take(take(x, 0, k), 1, j), 2, i)


def _trilinear_at(
    logits: torch.Tensor,
    corner: tuple[int, int],
    where: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    taps: tuple[Taps, Taps, Taps],
) -> torch.Tensor:
    """Class probabilities ``(N, C)`` interpolated at native voxels ``where = (i, j, k)``.

    Only the 8 model-grid corners of each voxel's cell are read (and put through the
    softmax, once per cell: on the 0.8 mm CT at 1.5 mm, 7 boundary voxels share one), so
    nothing the size of the grid is transposed or normalised. ``logits`` covers the plane
    from ``corner``; corners beyond it read its (background) rim.
    """
    (i, j, k), (tx, ty, tz) = where, taps
    nx, ny, nz = (int(n) for n in logits.shape[1:])
    cell = (tx.low[i] * (int(ty.low.max()) + 1) + ty.low[j]) * (int(tz.low.max()) + 1) + tz.low[k]
    cells, member = torch.unique(cell, return_inverse=True)
    first = torch.empty(int(cells.shape[0]), dtype=torch.long, device=cell.device)
    first.scatter_(0, member, torch.arange(int(cell.shape[0]), device=cell.device))
    ci, cj, ck = i[first], j[first], k[first]  # one native voxel of each cell
    xs = (torch.stack([tx.low[ci], tx.high[ci]], 1) - corner[0]).clamp(0, nx - 1)
    ys = (torch.stack([ty.low[cj], ty.high[cj]], 1) - corner[1]).clamp(0, ny - 1)
    zs = torch.stack([tz.low[ck], tz.high[ck]], 1)
    corners = (xs[:, :, None, None] * ny + ys[:, None, :, None]) * nz + zs[:, None, None, :]
    flat = logits.reshape(logits.shape[0], -1)
    values = flat[:, corners.reshape(-1)].reshape(flat.shape[0], -1, 8)
    table = torch.softmax(values, dim=0).permute(1, 2, 0).contiguous()  # (cells, 8, C)
    wx = torch.stack([1 - tx.weight[i], tx.weight[i]], 1)
    wy = torch.stack([1 - ty.weight[j], ty.weight[j]], 1)
    wz = torch.stack([1 - tz.weight[k], tz.weight[k]], 1)
    weights = (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(-1, 1, 8)
    return torch.bmm(weights, table.index_select(0, member))[:, 0]  # (N, 8) x (N, 8, C)
