"""Halo exchange along one axis: halos forward, halo gradients back to their owners."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medverse.parallel.spatial.comm import TAG_TO_LEFT, TAG_TO_RIGHT, exchange
from medverse.parallel.spatial.grid import ProcessGrid
from medverse.parallel.spatial.layout import AxisPlan


@dataclass(frozen=True)
class AxisHalo:
    """One split axis of a layer: its plan, tensor dimension, place in the grid, name."""

    plan: AxisPlan
    dim: int
    i: int
    what: str


def _peers(grid: ProcessGrid, halo: AxisHalo) -> tuple[int, int]:
    """Global ranks of the left and right neighbours (-1 where there is none)."""
    line, me = grid.line(halo.i), grid.coords[halo.i]
    left = grid.global_rank(line[me - 1]) if halo.plan.has_left else -1
    right = grid.global_rank(line[me + 1]) if halo.plan.has_right else -1
    return left, right


def _buffer(like: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    shape = list(like.shape)
    shape[dim] = length
    return like.new_zeros(shape)


def fetch(x: torch.Tensor, halo: AxisHalo, grid: ProcessGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Send the neighbours the edges of ``x`` they need; return the halos received from them."""
    plan, dim = halo.plan, halo.dim
    left, right = _peers(grid, halo)
    from_left = _buffer(x, dim, plan.recv_left)
    from_right = _buffer(x, dim, plan.recv_right)
    sends, recvs = [], []
    for peer, (lo, hi), tag in ((left, plan.send_left, TAG_TO_LEFT),
                                (right, plan.send_right, TAG_TO_RIGHT)):  # fmt: skip
        if peer >= 0 and hi > lo:
            sends.append((peer, x.narrow(dim, lo, hi - lo).contiguous(), tag))
    if plan.recv_left:
        recvs.append((left, from_left, TAG_TO_RIGHT))
    if plan.recv_right:
        recvs.append((right, from_right, TAG_TO_LEFT))
    exchange(sends, recvs, grid.group, f"{halo.what} (forward halo)")
    return from_left, from_right


def assemble(
    x: torch.Tensor, halo: AxisHalo, from_left: torch.Tensor, from_right: torch.Tensor
) -> torch.Tensor:
    """Return ``[zeros | left halo | own part of x | right halo | zeros]`` along the axis."""
    plan, dim = halo.plan, halo.dim
    lo, hi = plan.own
    pieces = [
        _buffer(x, dim, plan.pad_low),
        from_left,
        x.narrow(dim, lo, hi - lo),
        from_right,
        _buffer(x, dim, plan.pad_high),
    ]
    return torch.cat([p for p in pieces if p.shape[dim]], dim=dim)


def give_back(
    grad: torch.Tensor, halo: AxisHalo, grid: ProcessGrid, shape: torch.Size
) -> torch.Tensor:
    """Turn the gradient of the assembled tensor into the gradient of this rank's slab.

    Each halo's gradient goes back to the rank that owns those voxels; the gradients the
    neighbours send for this rank's edge voxels are added to its own.
    """
    plan, dim = halo.plan, halo.dim
    left, right = _peers(grid, halo)
    own_len = plan.own[1] - plan.own[0]
    _, g_left, g_own, g_right, _ = grad.split(
        [plan.pad_low, plan.recv_left, own_len, plan.recv_right, plan.pad_high], dim=dim
    )
    result = grad.new_zeros(shape)
    result.narrow(dim, plan.own[0], own_len).add_(g_own)
    sends, recvs, back = [], [], []
    if plan.recv_left:
        sends.append((left, g_left.contiguous(), TAG_TO_LEFT))
    if plan.recv_right:
        sends.append((right, g_right.contiguous(), TAG_TO_RIGHT))
    for peer, (lo, hi), tag in ((left, plan.send_left, TAG_TO_RIGHT),
                                (right, plan.send_right, TAG_TO_LEFT)):  # fmt: skip
        if peer >= 0 and hi > lo:
            buffer = _buffer(grad, dim, hi - lo)
            recvs.append((peer, buffer, tag))
            back.append((lo, hi, buffer))
    exchange(sends, recvs, grid.group, f"{halo.what} (backward halo)")
    for lo, hi, buffer in back:
        result.narrow(dim, lo, hi - lo).add_(buffer)
    return result
