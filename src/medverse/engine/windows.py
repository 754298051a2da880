"""Sliding windows shared by inference and validation: placement, Gaussian blending, z-slabs.

Windows sit exactly where MONAI's ``sliding_window_inference`` puts them (same scan interval,
same last-window clipping, same symmetric zero padding of an image smaller than the window,
same Gaussian importance map), so results match MONAI's to float rounding. Unlike MONAI, the
blended logits are handed back as z-slabs as soon as no later window touches them: memory is
bounded by ``classes x X x Y x window depth`` whatever the image length, and windows
whose voxels all lie below a "background" threshold (air) can be skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional

from medverse.engine.coarse_first import background_margin, first_pass, windows_to_skip

Shape3 = tuple[int, int, int]

SIGMA_SCALE = 0.125
"""Gaussian sigma as a fraction of the window size (MONAI's default)."""

EMPTY_LOGIT = -1.0e4
"""Logit of every foreground channel where no window was run (skipped air): background wins."""


def scan_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Window starts along one axis of ``size >= roi`` voxels, placed as MONAI places them.

    The step is ``int(roi * (1 - overlap))`` (at least 1); the last window is moved back so
    that it ends at the image border.
    """
    if size <= roi:
        return [0]
    step = max(int(roi * (1.0 - overlap)), 1)
    starts: list[int] = []
    while not starts or starts[-1] + roi < size:
        starts.append(min(len(starts) * step, size - roi))
    return starts


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of one image go.

    Attributes:
        shape: Image shape (unpadded).
        roi: Window size.
        pad: Zeros added before each axis (an image smaller than the window is centred).
        padded: Image shape after padding (at least ``roi`` on every axis).
        starts: Window starts in padded coordinates, ordered by z, then x, then y.
    """

    shape: Shape3
    roi: Shape3
    pad: Shape3
    padded: Shape3
    starts: tuple[Shape3, ...]

    @property
    def z_starts(self) -> list[int]:
        """The distinct z starts, ascending (one band of windows each)."""
        return sorted({s[2] for s in self.starts})


def window_grid(shape: Sequence[int], roi: Sequence[int], overlap: float) -> WindowGrid:
    """Place the windows for an image of ``shape``.

    Raises:
        ValueError: If ``overlap`` is outside [0, 1) or a size is not positive.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    size = tuple(int(s) for s in shape)
    win = tuple(int(r) for r in roi)
    if len(size) != 3 or len(win) != 3 or min(size) < 1 or min(win) < 1:
        raise ValueError(f"need 3 positive sizes, got shape {shape} and roi {roi}")
    padded = tuple(max(s, r) for s, r in zip(size, win))
    pad = tuple((p - s) // 2 for p, s in zip(padded, size))
    xs, ys, zs = (scan_starts(p, r, overlap) for p, r in zip(padded, win))
    starts = tuple((x, y, z) for z in zs for x in xs for y in ys)
    return WindowGrid(size, win, pad, padded, starts)  # type: ignore[arg-type]


def gaussian_weights(roi: Sequence[int], device: torch.device) -> torch.Tensor:
    """MONAI's Gaussian importance map for a window (float32, minimum clamped to 1e-3).

    The same operations as ``monai.data.utils.compute_importance_map(mode="gaussian")``, so the
    weights are bit for bit MONAI's (a test compares them), without importing MONAI: a
    ``segment`` run whose network comes from the export cache never needs it.
    """
    shape = tuple(int(r) for r in roi)
    weights = torch.ones((), dtype=torch.float32, device=device)
    for axis, size in enumerate(shape):
        sigma = size * SIGMA_SCALE
        x = torch.arange(
            -(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32, device=device
        )
        gauss = torch.exp(x**2 / (-2 * sigma**2))
        weights = weights.unsqueeze(-1) * gauss[(None,) * axis] if axis else gauss
    floor = max(float(weights.min()), 1e-3)
    return torch.clamp_(weights, min=floor)


@dataclass
class Slab:
    """Blended logits of consecutive z-slices of the (unpadded) image.

    Only the part of each slice that the windows covered is stored: ``logits`` sits at
    ``corner`` in a ``plane``-sized slice, and every voxel outside it is background
    (logit 0 for channel 0, `EMPTY_LOGIT` for the others).

    Attributes:
        start: Index of the first slice.
        logits: ``(C, bx, by, n)`` float32.
        corner: ``(x0, y0)`` of ``logits`` in the slice.
        plane: The slice's ``(X, Y)``; None when ``logits`` covers it.
    """

    start: int
    logits: torch.Tensor
    corner: tuple[int, int] = (0, 0)
    plane: tuple[int, int] | None = None

    @property
    def stop(self) -> int:
        """One past the last slice."""
        return self.start + int(self.logits.shape[-1])

    @property
    def size(self) -> tuple[int, int]:
        """The slice's ``(X, Y)``."""
        return self.plane or (int(self.logits.shape[1]), int(self.logits.shape[2]))

    def full(self) -> torch.Tensor:
        """All logits, ``(C, X, Y, n)``, background filled in."""
        if self.plane is None:
            return self.logits
        out = background_logits(self.logits.shape[0], (*self.plane, self.logits.shape[3]),
                                self.logits.device)  # fmt: skip
        self.region(out)[...] = self.logits
        return out

    def argmax(self) -> torch.Tensor:
        """The largest channel of every voxel, ``(X, Y, n)`` (see `channel_argmax`)."""
        if self.plane is None:
            return channel_argmax(self.logits)
        classes = int(self.logits.shape[0])
        dtype = torch.uint8 if classes < 256 else torch.int64
        out = torch.zeros(
            (*self.plane, self.logits.shape[3]), dtype=dtype, device=self.logits.device
        )
        self.region(out[None])[0] = channel_argmax(self.logits).to(dtype)
        return out

    def region(self, full: torch.Tensor) -> torch.Tensor:
        """The view of ``full`` (``(C, X, Y, n)``) that ``logits`` covers."""
        x0, y0 = self.corner
        return full[:, x0 : x0 + self.logits.shape[1], y0 : y0 + self.logits.shape[2]]


def background_logits(channels: int, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Logits ``(C, *shape)`` that say background everywhere."""
    out = torch.full((channels, *shape), EMPTY_LOGIT, device=device)
    out[0] = 0.0
    return out


def channel_argmax(values: torch.Tensor) -> torch.Tensor:
    """Index of the largest channel of ``(C, ...)`` values (first one on ties).

    Same result as ``values.argmax(0)``, several times faster on a CPU (one pass per channel
    instead of a strided reduction); uint8 for fewer than 256 channels, else int64.
    """
    if values.shape[0] >= 256:
        return values.argmax(dim=0)
    best = values[0].clone()
    index = torch.zeros(values.shape[1:], dtype=torch.uint8, device=values.device)
    larger = torch.empty(values.shape[1:], dtype=torch.bool, device=values.device)
    for channel in range(1, int(values.shape[0])):
        torch.gt(values[channel], best, out=larger)
        torch.maximum(best, values[channel], out=best)
        index.masked_fill_(larger, channel)
    return index


class WindowBlender:
    """Cut one image into windows and blend their logits back, slab by slab in z order.

    Feed the logits of `patches` back through `add` in the same order; `take_slabs` then
    returns the slices no later window can change. The blend is MONAI's: the sum of
    ``weights * logits`` over the windows covering a voxel, divided by the sum of weights.

    Args:
        image: ``(X, Y, Z)`` normalised image on the model's grid, on the compute device.
        roi: Window size.
        overlap: Fraction of a window shared with its neighbour along each axis.
        channels: Logit channels the network produces (after any channel selection).
        skip_below: Skip the windows (of the whole image's grid) with no voxel above this
            normalised value; voxels no remaining window covers get background, and only the
            box the remaining windows span is blended. Every other voxel gets exactly the
            logits of a run without skipping. None runs every window.
        accumulate_dtype: dtype of the running sums (float16 halves memory on a GPU).
        coarse_first: Run a covering subset of each band's windows first and the others only
            near structures (`medverse.engine.coarse_first`); windows then come one band at a
            time (`next_patch` answers None while a band's first pass is still out).
    """

    def __init__(
        self,
        image: torch.Tensor,
        roi: Sequence[int],
        overlap: float,
        channels: int,
        *,
        skip_below: float | None = None,
        accumulate_dtype: torch.dtype = torch.float32,
        coarse_first: bool = False,
    ) -> None:
        if image.ndim != 3:
            raise ValueError(f"expected an (X, Y, Z) image, got shape {tuple(image.shape)}")
        self.shape: Shape3 = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
        whole = window_grid(self.shape, roi, overlap)
        box, self.grid, self.keep = crop_to_kept(whole, _kept_windows(image, whole, skip_below))
        self.origin: Shape3 = (box[0].start, box[1].start, box[2].start)
        self.channels = channels
        self.device = image.device
        self.image = _pad(image[box], self.grid)
        self.weights = gaussian_weights(self.grid.roi, self.device)
        self._dtype = accumulate_dtype
        self._bands = self.grid.z_starts
        self._left = [sum(k for s, k in zip(self.grid.starts, self.keep) if s[2] == z)
                      for z in self._bands]  # fmt: skip
        first = (
            first_pass(self.grid.starts, self.keep, self.grid.roi, self.grid.padded)
            if coarse_first
            else list(self.keep)
        )
        self._deferred = {i for i, k in enumerate(self.keep) if k and not first[i]}
        self._order = sorted(
            (i for i, k in enumerate(self.keep) if k),
            key=lambda i: (self.grid.starts[i][2], i in self._deferred),
        )  # by band; within a band the first pass before the deferred windows
        self._next = 0
        self._handed: deque[int] = deque()
        self.skipped_after_first_pass: list[Shape3] = []  # starts, in the cropped grid
        self._added = 0
        self._band = 0
        self._z_lo = 0
        self._depth = self.grid.roi[2]  # windows arrive in z order: one window deep suffices
        self._sums: torch.Tensor | None = None
        self._weight_sums: torch.Tensor | None = None
        self._ready: list[Slab] = []
        self._emit_background(0, self.origin[2])
        self._finish_complete_bands()

    @property
    def windows(self) -> int:
        """Number of windows the grid holds."""
        return len(self.grid.starts)

    @property
    def windows_run(self) -> int:
        """Windows that go (or, with ``coarse_first``, may still go) through the network."""
        return len(self._order)

    @property
    def done(self) -> bool:
        """True once every slice has been handed out or is waiting in `take_slabs`."""
        return self._band >= len(self._bands)

    def patches(self) -> Iterator[torch.Tensor]:
        """The windows to run, ``(1, *roi)`` each, in the order `add` expects them back.

        With ``coarse_first`` it stops at the first window that waits for results: use
        `next_patch` between `add` calls instead.
        """
        while (patch := self.next_patch()) is not None:
            yield patch

    def next_patch(self) -> torch.Tensor | None:
        """The next window to run, or None (all handed out, or waiting for `add`)."""
        while self._next < len(self._order):
            index = self._order[self._next]
            if index in self._deferred:
                if self._handed:  # the band's first pass is still out
                    return None
                self._decide_band(self.grid.starts[index][2])
                continue
            self._next += 1
            self._handed.append(index)
            x, y, z = self.grid.starts[index]
            rx, ry, rz = self.grid.roi
            return self.image[None, x : x + rx, y : y + ry, z : z + rz]
        return None

    def _decide_band(self, z: int) -> None:
        """Keep the band's deferred windows near structures; drop the rest (background)."""
        band = [i for i in self._order[self._next :] if self.grid.starts[i][2] == z]
        sums, weight_sums = self._buffers()
        margin = background_margin(sums, weight_sums, self.grid.roi[2])
        corners = [(self.grid.starts[i][0], self.grid.starts[i][1]) for i in band]
        skip = {i for i, s in zip(band, windows_to_skip(margin, corners, self.grid.roi)) if s}
        self._deferred.difference_update(band)
        self._order = self._order[: self._next] + [
            i for i in self._order[self._next :] if i not in skip
        ]
        self.skipped_after_first_pass += [self.grid.starts[i] for i in sorted(skip)]
        self._left[self._bands.index(z)] -= len(skip)
        self._finish_complete_bands()

    def add(self, logits: torch.Tensor) -> None:
        """Blend the ``(C, *roi)`` logits of the next window returned by `patches`."""
        if not self._handed:
            raise RuntimeError("more window results than windows")
        x, y, z = self.grid.starts[self._handed.popleft()]
        rx, ry, rz = self.grid.roi
        sums, weight_sums = self._buffers()
        z0 = z - self._z_lo
        box = (slice(x, x + rx), slice(y, y + ry), slice(z0, z0 + rz))
        if self._dtype == torch.float32:
            sums[(slice(None), *box)].addcmul_(logits.float(), self.weights)
        else:
            sums[(slice(None), *box)] += (logits.float() * self.weights).to(self._dtype)
        weight_sums[box] += self.weights.to(self._dtype)
        self._added += 1
        self._left[self._bands.index(z)] -= 1
        self._finish_complete_bands()

    def take_slabs(self) -> list[Slab]:
        """Return (and forget) the finished slabs, in z order."""
        ready, self._ready = self._ready, []
        return ready

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._sums is None or self._weight_sums is None:
            px, py, _ = self.grid.padded
            shape = (px, py, self._depth)
            self._sums = torch.zeros((self.channels, *shape), dtype=self._dtype, device=self.device)
            self._weight_sums = torch.zeros(shape, dtype=self._dtype, device=self.device)
        return self._sums, self._weight_sums

    def _finish_complete_bands(self) -> None:
        while self._band < len(self._bands) and self._left[self._band] == 0:
            last = self._band + 1 == len(self._bands)
            z_hi = self.grid.padded[2] if last else self._bands[self._band + 1]
            self._emit(z_hi)
            self._band += 1
            if last:
                self._emit_background(self.origin[2] + self.grid.shape[2], self.shape[2])

    def _emit_background(self, start: int, stop: int) -> None:
        """Hand out slices ``[start, stop)`` outside the foreground box: all background."""
        sx, sy, _ = self.grid.shape
        for k0 in range(start, stop, self.grid.roi[2]):
            n = min(stop, k0 + self.grid.roi[2]) - k0
            logits = background_logits(self.channels, (sx, sy, n), self.device)
            self._ready.append(self._slab(k0, logits))

    def _slab(self, start: int, logits: torch.Tensor) -> Slab:
        """A slab of the whole image from logits of the foreground box."""
        cropped = (int(logits.shape[1]), int(logits.shape[2])) != self.shape[:2]
        plane = (self.shape[0], self.shape[1]) if cropped else None
        return Slab(start, logits, corner=(self.origin[0], self.origin[1]), plane=plane)

    def _emit(self, z_hi: int) -> None:
        """Hand out padded slices ``[z_lo, z_hi)`` (cropped to the image) and shift the buffers."""
        n = z_hi - self._z_lo
        sums, weight_sums = self._buffers()
        px0, py0, pz0 = self.grid.pad
        sx, sy, sz = self.grid.shape
        first, last = max(self._z_lo, pz0), min(z_hi, pz0 + sz)
        if last > first:
            cut = slice(first - self._z_lo, last - self._z_lo)
            total = sums[:, px0 : px0 + sx, py0 : py0 + sy, cut].float()
            weight = weight_sums[px0 : px0 + sx, py0 : py0 + sy, cut].float()
            self._ready.append(self._slab(self.origin[2] + first - pz0, _blend(total, weight)))
        keep = self._depth - n
        if keep > 0:  # shift the rest down; a copy in place unless source and target overlap
            for buffer in (sums, weight_sums):
                rest = buffer[..., n:]
                buffer[..., :keep].copy_(rest if n >= keep else rest.clone())
        sums[..., max(keep, 0) :] = 0
        weight_sums[..., max(keep, 0) :] = 0
        self._z_lo = z_hi


def crop_to_kept(
    grid: WindowGrid, keep: Sequence[bool]
) -> tuple[tuple[slice, slice, slice], WindowGrid, list[bool]]:
    """The image box the kept windows span, and the grid of the windows inside it.

    The windows keep their places (shifted into the box), so a voxel inside gets the same
    windows as in the whole grid. With no window kept, the box is the first window's.

    Returns:
        ``(box, grid, keep)``: the box in image coordinates, and the windows in it.
    """
    chosen = [s for s, k in zip(grid.starts, keep) if k] or [grid.starts[0]]
    box, shape, pad, padded, last = [], [], [], [], []
    for axis in range(3):
        if grid.padded[axis] == grid.roi[axis]:  # one window (over a padded axis, maybe)
            lo, hi, before, size = 0, grid.shape[axis], grid.pad[axis], grid.padded[axis]
        else:
            lo = min(s[axis] for s in chosen)
            hi = max(s[axis] for s in chosen) + grid.roi[axis]
            before, size = 0, hi - lo
        box.append(slice(lo, hi))
        shape.append(hi - lo)
        pad.append(before)
        padded.append(size)
        last.append(lo + size - grid.roi[axis])  # the last start inside the box
    inside = [
        i
        for i, s in enumerate(grid.starts)
        if all(box[a].start <= s[a] <= last[a] for a in range(3))
    ]
    shift = [box[a].start for a in range(3)]
    starts = tuple(_shape3([s - d for s, d in zip(grid.starts[i], shift)]) for i in inside)
    cropped = WindowGrid(_shape3(shape), grid.roi, _shape3(pad), _shape3(padded), starts)
    return (box[0], box[1], box[2]), cropped, [bool(keep[i]) for i in inside]


def _shape3(values: Sequence[int]) -> Shape3:
    return (int(values[0]), int(values[1]), int(values[2]))


def _blend(total: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``total / weight``; voxels no window covered get background (logit 0 vs EMPTY_LOGIT)."""
    out = total / weight.clamp(min=torch.finfo(weight.dtype).tiny)  # covered: weight >= 1e-3
    covered = weight > 0
    if bool(covered.all()):
        return out
    out[0] = torch.where(covered, out[0], torch.zeros_like(weight))
    out[1:] = torch.where(covered, out[1:], torch.full_like(weight, EMPTY_LOGIT))
    return out


def _pad(image: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """Zero-pad ``image`` symmetrically up to ``grid.padded`` (MONAI's constant padding)."""
    if grid.padded == grid.shape:
        return image
    pads: list[int] = []
    for axis in (2, 1, 0):
        before = grid.pad[axis]
        pads += [before, grid.padded[axis] - grid.shape[axis] - before]
    return functional.pad(image[None], pads, mode="constant", value=0.0)[0]


def _kept_windows(image: torch.Tensor, grid: WindowGrid, skip_below: float | None) -> list[bool]:
    """Which windows run: all, or those holding at least one (unpadded) voxel above the cut."""
    if skip_below is None:
        return [True] * len(grid.starts)
    above = _pad((image > skip_below).to(torch.uint8), grid)
    rx, ry, rz = grid.roi
    return [bool(above[x : x + rx, y : y + ry, z : z + rz].any()) for x, y, z in grid.starts]
