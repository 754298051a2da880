"""Halo exchange along one axis as an autograd step: halos forward, halo gradients back."""

from __future__ import annotations

from typing import Any

import torch

from medverse.parallel.spatial.comm import TAG_TO_LEFT, TAG_TO_RIGHT, exchange
from medverse.parallel.spatial.grid import ProcessGrid
from medverse.parallel.spatial.layout import AxisPlan


def _peers(grid: ProcessGrid, i: int, plan: AxisPlan) -> tuple[int, int]:
    """Global ranks of the left and right neighbours (-1 where there is none)."""
    line, me = grid.line(i), grid.coords[i]
    left = grid.global_rank(line[me - 1]) if plan.has_left else -1
    right = grid.global_rank(line[me + 1]) if plan.has_right else -1
    return left, right


def _buffer(like: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    shape = list(like.shape)
    shape[dim] = length
    return like.new_zeros(shape)


class _HaloExchange(torch.autograd.Function):
    """Forward: assemble ``[zeros | left halo | own | right halo | zeros]`` along ``dim``.

    Backward: send each halo's gradient back to the rank that owns those voxels and add the
    gradients received for this rank's edge voxels to its own.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, plan: AxisPlan, dim: int, grid: ProcessGrid, i: int, what: str
    ) -> torch.Tensor:
        left, right = _peers(grid, i, plan)
        sends, recvs = [], []
        from_left = _buffer(x, dim, plan.recv_left)
        from_right = _buffer(x, dim, plan.recv_right)
        lo, hi = plan.send_left
        if left >= 0 and hi > lo:
            sends.append((left, x.narrow(dim, lo, hi - lo).contiguous(), TAG_TO_LEFT))
        lo, hi = plan.send_right
        if right >= 0 and hi > lo:
            sends.append((right, x.narrow(dim, lo, hi - lo).contiguous(), TAG_TO_RIGHT))
        if plan.recv_left:
            recvs.append((left, from_left, TAG_TO_RIGHT))
        if plan.recv_right:
            recvs.append((right, from_right, TAG_TO_LEFT))
        exchange(sends, recvs, grid.group, f"{what} (forward halo)")
        lo, hi = plan.own
        pieces = [
            _buffer(x, dim, plan.pad_low),
            from_left,
            x.narrow(dim, lo, hi - lo),
            from_right,
            _buffer(x, dim, plan.pad_high),
        ]
        ctx.plan, ctx.dim, ctx.grid, ctx.i, ctx.what = plan, dim, grid, i, what
        ctx.shape = x.shape
        return torch.cat([p for p in pieces if p.shape[dim]], dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        plan: AxisPlan = ctx.plan
        dim = ctx.dim
        left, right = _peers(ctx.grid, ctx.i, plan)
        own_len = plan.own[1] - plan.own[0]
        _, g_left, g_own, g_right, _ = grad.split(
            [plan.pad_low, plan.recv_left, own_len, plan.recv_right, plan.pad_high], dim=dim
        )
        result = grad.new_zeros(ctx.shape)
        result.narrow(dim, plan.own[0], own_len).add_(g_own)
        sends, recvs = [], []
        if plan.recv_left:
            sends.append((left, g_left.contiguous(), TAG_TO_LEFT))
        if plan.recv_right:
            sends.append((right, g_right.contiguous(), TAG_TO_RIGHT))
        back = []
        for peer, (lo, hi), tag in (
            (left, plan.send_left, TAG_TO_RIGHT),
            (right, plan.send_right, TAG_TO_LEFT),
        ):
            if peer >= 0 and hi > lo:
                buffer = _buffer(grad, dim, hi - lo)
                recvs.append((peer, buffer, tag))
                back.append((lo, hi, buffer))
        exchange(sends, recvs, ctx.grid.group, f"{ctx.what} (backward halo)")
        for lo, hi, buffer in back:
            result.narrow(dim, lo, hi - lo).add_(buffer)
        return result, None, None, None, None, None


def halo_exchange(
    x: torch.Tensor, plan: AxisPlan, dim: int, grid: ProcessGrid, i: int, what: str
) -> torch.Tensor:
    """Return ``x`` extended along tensor dimension ``dim`` by the halos ``plan`` describes.

    Args:
        x: This rank's local slab.
        plan: The exchange along split axis ``i`` of ``grid`` (see `plan_axis`).
        dim: Tensor dimension of that axis.
        grid: The process grid.
        i: Index of the axis in ``grid.axes``.
        what: Layer name for error messages.
    """
    out: torch.Tensor = _HaloExchange.apply(x, plan, dim, grid, i, what)
    return out
