"""The one resampler (torch, CPU or CUDA): to a spacing, or onto any reference grid via affines.

Convention: a voxel index ``v`` is the centre of voxel ``v``; world = affine @ v. A target
voxel ``d`` reads the source at index ``inv(A_src) @ A_dst @ d``. Order 0 is nearest
neighbour (no new values), order 1 linear. Volumes (numpy) and tensors take the same path.

Two implementations of that one contract sit behind `resample_tensor`: grids that share their
axis directions (every grid `grid_for_spacing` makes) with linear, border-padded sampling go
through three 1D passes block by block (`medverse.preprocessing.taps`), far cheaper than a
general ``grid_sample`` and with bounded memory; every other case calls ``grid_sample``
(``align_corners=False``: the normalised coordinate of index ``v`` on an axis of size ``n``
is ``(2 v + 1) / n - 1``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch.nn import functional

from medverse.core.volume import LabelMap, Volume
from medverse.preprocessing.taps import BLOCK_VOXELS, AxisMap, axis_map, lerp_axis, linear_taps

Padding = Literal["zeros", "border"]
Shape3 = tuple[int, int, int]
Prepare = Callable[[torch.Tensor], torch.Tensor]
CHUNK_VOXELS = 1 << 21
BLOCK_THREADS = 4
"""Most threads the block-wise CPU path resamples blocks on (at most one per core)."""
_EXACT_FLOAT32_INT = 1 << 24


def same_grid(
    affine_a: np.ndarray, shape_a: Sequence[int], affine_b: np.ndarray, shape_b: Sequence[int]
) -> bool:
    """Return True if two grids have the same shape and (to 1e-6 mm) the same affine."""
    same_shape = tuple(int(s) for s in shape_a) == tuple(int(s) for s in shape_b)
    return same_shape and bool(np.allclose(affine_a, affine_b, rtol=0.0, atol=1e-6))


def grid_for_spacing(
    affine: np.ndarray, shape: Sequence[int], spacing: Sequence[float]
) -> tuple[np.ndarray, Shape3]:
    """Return the grid with voxel size ``spacing`` covering the same extent, same centre.

    The axes keep their directions; each size becomes ``round(n * old / new)`` (at least 1),
    and the origin moves so that both grids share their centre point.

    Args:
        affine: The source grid's 4x4 affine.
        shape: The source grid's shape ``(i, j, k)``.
        spacing: The wanted voxel size in mm, ``[i, j, k]``.

    Returns:
        ``(affine, shape)`` of the new grid.
    """
    affine = np.asarray(affine, dtype=np.float64)
    old = np.linalg.norm(affine[:3, :3], axis=0)
    new = np.asarray(spacing, dtype=np.float64)
    if new.shape != (3,) or np.any(new <= 0):
        raise ValueError(f"spacing must be three positive numbers, got {spacing!r}")
    old_shape = np.asarray(shape, dtype=np.float64)
    new_shape = np.maximum(np.rint(old_shape * old / new), 1).astype(int)
    out = np.eye(4)
    out[:3, :3] = affine[:3, :3] * (new / old)
    centre = affine[:3, :3] @ ((old_shape - 1) / 2) + affine[:3, 3]
    out[:3, 3] = centre - out[:3, :3] @ ((new_shape - 1) / 2)
    return out, (int(new_shape[0]), int(new_shape[1]), int(new_shape[2]))


def resample_to_spacing(
    volume: Volume,
    spacing: Sequence[float],
    *,
    order: int,
    padding: Padding = "border",
    device: str | torch.device = "cpu",
) -> Volume:
    """Resample a Volume to a voxel size, keeping its extent, centre and axis directions.

    Args:
        volume: The image or label map (a LabelMap stays a LabelMap).
        spacing: Target voxel size in mm, ``[i, j, k]``.
        order: 0 nearest (labels), 1 linear (images).
        padding: What the rim outside the source grid reads: ``border`` repeats the edge.
        device: Where torch computes.

    Returns:
        The resampled Volume, its affine describing the new grid exactly.
    """
    affine, shape = grid_for_spacing(volume.affine, volume.shape, spacing)
    return resample_to_grid(volume, affine, shape, order=order, padding=padding, device=device)


def resample_to_grid(
    volume: Volume,
    affine: np.ndarray,
    shape: Sequence[int],
    *,
    order: int,
    padding: Padding = "zeros",
    device: str | torch.device = "cpu",
) -> Volume:
    """Resample a Volume onto any reference grid, matching them through their affines.

    Use it to bring a prediction back to the native grid, or to put a NIfTI label map onto a
    DICOM series' grid (flips and axis permutations are exact with ``order=0``).

    Args:
        volume: The image or label map (a LabelMap stays a LabelMap).
        affine: The reference grid's 4x4 affine (voxel index -> RAS mm).
        shape: The reference grid's shape ``(i, j, k)``.
        order: 0 nearest (labels: only existing values), 1 linear.
        padding: What points outside the source read: ``zeros`` or the ``border`` value.
        device: Where torch computes.

    Returns:
        A Volume with the reference affine and shape; order 0 keeps the dtype, order 1 gives
        float32 (or the source's float dtype).
    """
    if isinstance(volume, LabelMap) and order != 0:
        raise ValueError("a LabelMap can only be resampled with order=0 (nearest)")
    target_affine = np.asarray(affine, dtype=np.float64)
    target_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    array = np.asarray(volume.array)
    if same_grid(volume.affine, volume.shape, target_affine, target_shape):
        out = array.copy() if order == 0 else array.astype(_linear_dtype(array.dtype))
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(_to_torchable(array))).to(device)
        result = resample_tensor(
            tensor, volume.affine, target_affine, target_shape, order=order, padding=padding
        )
        out = result.cpu().numpy()
        out = _restore_dtype(out, array.dtype) if order == 0 else out
    return dataclasses.replace(volume, array=out, affine=target_affine)


def resample_tensor(
    tensor: torch.Tensor,
    src_affine: np.ndarray | torch.Tensor,
    dst_affine: np.ndarray | torch.Tensor,
    dst_shape: Sequence[int],
    *,
    order: int,
    padding: Padding = "zeros",
    prepare: Prepare | None = None,
    finish: Prepare | None = None,
) -> torch.Tensor:
    """Resample a tensor from one grid onto another, on the tensor's device.

    Args:
        tensor: ``[i, j, k]``, ``[C, i, j, k]`` or ``[N, C, i, j, k]`` on the source grid.
            A Fortran-ordered 3D tensor (as nibabel returns NIfTI data) is read in its own
            memory order on the block-wise path, without a transposing copy.
        src_affine: 4x4 affine of the source grid.
        dst_affine: 4x4 affine of the target grid.
        dst_shape: Target ``(i, j, k)``.
        order: 0 nearest (output keeps the dtype), 1 linear (output is floating).
        padding: ``zeros`` or ``border`` for points outside the source grid.
        prepare: Order 1 only: what turns source voxels into floats before interpolation
            (cast, clip, normalise). On the block-wise path it runs one block at a time, so
            the whole source is never held as floats. Defaults to a cast to float32 (float64
            for float64 input, or integers float32 cannot hold exactly).
        finish: Order 1 only: an elementwise map of the interpolated values (for example a
            linear normalisation), applied block by block on the block-wise path (in the
            blocks' threads) and to the whole result elsewhere.

    Returns:
        The same leading dimensions with the target spatial shape.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"expected a 3D, 4D or 5D tensor, got shape {tuple(tensor.shape)}")
    if order == 0 and (prepare is not None or finish is not None):
        raise ValueError("prepare and finish only apply to linear resampling (order=1)")
    src = _as_numpy_affine(src_affine)
    dst = _as_numpy_affine(dst_affine)
    out_shape = (int(dst_shape[0]), int(dst_shape[1]), int(dst_shape[2]))
    if same_grid(src, tensor.shape[-3:], dst, out_shape):
        if order == 0:
            return tensor.clone()
        same = prepare(tensor) if prepare else tensor.to(_work_dtype(tensor), copy=True)
        return finish(same) if finish else same
    mapping = axis_map(src, dst) if order == 1 and padding == "border" else None
    if mapping is not None:
        cast = partial(torch.Tensor.to, dtype=_work_dtype(tensor))
        return _resample_aligned(tensor, mapping, out_shape, prepare or cast, finish)
    out = _resample_general(tensor, np.linalg.inv(src) @ dst, out_shape, order, padding, prepare)
    return finish(out) if finish else out


def _resample_general(
    tensor: torch.Tensor,
    mapping: np.ndarray,
    out_shape: Shape3,
    order: int,
    padding: Padding,
    prepare: Prepare | None,
) -> torch.Tensor:
    """Any grid pair, through ``grid_sample`` (``mapping``: target index -> source index)."""
    lead = tuple(tensor.shape[:-3])
    x = prepare(tensor) if prepare is not None else tensor
    x = x.reshape((-1, *(lead[-1:] or (1,)), *tensor.shape[-3:]))
    x = x.to(_work_dtype(x))
    out = _sample_in_chunks(x, mapping, out_shape, order=order, padding=padding)
    out = out.reshape((*lead, *out_shape))
    if order == 0 and out.dtype != tensor.dtype:
        out = out.round().to(tensor.dtype)
    return out


def _resample_aligned(
    source: torch.Tensor,
    mapping: AxisMap,
    target_shape: Shape3,
    prepare: Prepare,
    finish: Prepare | None = None,
) -> torch.Tensor:
    """Trilinear, border-padded resampling between grids that share their axis directions."""
    if source.ndim == 3 and not source.is_contiguous():
        flipped = source.permute(2, 1, 0)
        if flipped.is_contiguous():  # read in memory order; blocks land transposed
            reverse = AxisMap(_reversed(mapping.scale), _reversed(mapping.offset))
            target = (target_shape[2], target_shape[1], target_shape[0])
            return _resample_blocks(flipped, reverse, target, prepare, finish, transposed=True)
    return _resample_blocks(source, mapping, target_shape, prepare, finish)


def _resample_blocks(
    source: torch.Tensor,
    mapping: AxisMap,
    target_shape: Shape3,
    prepare: Prepare,
    finish: Prepare | None = None,
    *,
    transposed: bool = False,
) -> torch.Tensor:
    """Resample in blocks of target planes along the first spatial axis (the slowest).

    On a CPU the blocks go to `BLOCK_THREADS` threads of one intra-op thread each (the work
    is memory-bound and made of short operations: whole blocks in parallel keep the cores
    busy where per-operation threading waits on OpenMP). Each block is computed exactly as
    alone, so the result does not depend on the thread count. ``finish`` maps each finished
    block; with ``transposed`` (a 3D source) the result is ``target_shape`` reversed,
    contiguous, each block written straight to its place (no transposing copy after).
    """
    size = tuple(int(s) for s in source.shape[-3:])
    device = source.device
    taps = [
        linear_taps(size[a], mapping.scale[a], mapping.offset[a], target_shape[a], device)
        for a in range(3)
    ]
    plane = max(1, target_shape[1] * target_shape[2], size[1] * size[2])
    threads = min(BLOCK_THREADS, os.cpu_count() or 1) if device.type == "cpu" else 1
    parts = 2 * threads if threads > 1 else 1  # CPU: at least two blocks per thread
    step = max(1, min(BLOCK_VOXELS // plane, -(-target_shape[0] // parts)))
    spans = [(i0, min(i0 + step, target_shape[0])) for i0 in range(0, target_shape[0], step)]
    if not spans:
        raise ValueError(f"empty target grid {target_shape}")

    def block(i0: int, i1: int) -> torch.Tensor:
        first_taps = taps[0].shifted(i0, i1, 0)
        first, last = int(first_taps.low.min()), int(first_taps.high.max()) + 1
        values = prepare(source[..., first:last, :, :])
        values = lerp_axis(values, -1, taps[2])
        values = lerp_axis(values, -2, taps[1])
        values = lerp_axis(values, -3, taps[0].shifted(i0, i1, first))
        return finish(values) if finish is not None else values

    probe = prepare(source[..., :1, :1, :1])  # the dtype, without a block's work
    dtype = (finish(probe) if finish is not None else probe).dtype
    lead = tuple(source.shape[:-3])
    if transposed:
        whole = torch.empty(target_shape[::-1], dtype=dtype, device=device)
        out = whole.permute(2, 1, 0)  # a view in the target's order
    else:
        whole = out = torch.empty((*lead, *target_shape), dtype=dtype, device=device)

    def fill(span: tuple[int, int]) -> None:
        out[..., span[0] : span[1], :, :] = block(*span)

    threads = min(threads, len(spans))
    if threads < 2:
        for span in spans:
            fill(span)
        return whole
    with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        list(pool.map(fill, spans))  # list(): a block's error is raised here
    return whole


def _reversed(values: tuple[float, float, float]) -> tuple[float, float, float]:
    return (values[2], values[1], values[0])


def _sample_in_chunks(
    x: torch.Tensor, mapping: np.ndarray, out_shape: Shape3, *, order: int, padding: Padding
) -> torch.Tensor:
    """Sample ``x`` ([N, C, I, J, K]) at ``mapping @ d`` for every target index, in slabs."""
    n, c = x.shape[0], x.shape[1]
    out = torch.empty((n, c, *out_shape), dtype=x.dtype, device=x.device)
    m = torch.as_tensor(mapping, dtype=torch.float64, device=x.device)
    sizes = torch.tensor(x.shape[-3:], dtype=torch.float64, device=x.device)
    jj = torch.arange(out_shape[1], dtype=torch.float64, device=x.device)[:, None, None]
    kk = torch.arange(out_shape[2], dtype=torch.float64, device=x.device)[None, :, None]
    step = max(1, CHUNK_VOXELS // max(1, out_shape[1] * out_shape[2]))
    mode = "nearest" if order == 0 else "bilinear"
    for start in range(0, out_shape[0], step):
        stop = min(start + step, out_shape[0])
        ii = torch.arange(start, stop, dtype=torch.float64, device=x.device)[:, None, None, None]
        src = ii * m[:3, 0] + (jj * m[:3, 1] + kk * m[:3, 2] + m[:3, 3])[None]
        normalised = (2.0 * src + 1.0) / sizes - 1.0  # (ci, J, K, 3) in (i, j, k) order
        grid = normalised.flip(-1).to(x.dtype)  # grid_sample wants (x=k, y=j, z=i)
        grid = grid.unsqueeze(0).expand(n, -1, -1, -1, -1)
        out[:, :, start:stop] = functional.grid_sample(
            x, grid, mode=mode, padding_mode=padding, align_corners=False
        )
    return out


def _work_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 input and integers float32 cannot hold exactly."""
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor.dtype
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.numel() == 0:
        return torch.float32
    if tensor.dtype.itemsize <= 2:  # every int8/uint8/int16 value is exact in float32
        return torch.float32
    big = int(tensor.abs().max()) >= _EXACT_FLOAT32_INT
    return torch.float64 if big else torch.float32


def _linear_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _to_torchable(array: np.ndarray) -> np.ndarray:
    """Cast to a dtype torch can wrap and sample exactly (uint16/uint32 are not)."""
    if array.dtype == np.bool_ or (array.dtype.kind == "u" and array.itemsize > 1):
        return array.astype(np.int64)
    if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        return array.astype(np.float32)
    return array


def _restore_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    return (np.rint(array) if dtype.kind in "iub" else array).astype(dtype)


def _as_numpy_affine(affine: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(affine, torch.Tensor):
        affine = affine.detach().cpu().numpy()
    out = np.asarray(affine, dtype=np.float64)
    if out.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine, got shape {out.shape}")
    return out
