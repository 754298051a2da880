"""Instance, batch and group normalisation whose statistics cover the whole split volume."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from medverse.parallel.spatial.comm import all_gather, all_reduce
from medverse.parallel.spatial.errors import UnsupportedLayerError
from medverse.parallel.spatial.grid import ProcessGrid

Norm = nn.InstanceNorm3d | nn.BatchNorm3d | nn.GroupNorm


class _GlobalNormalise(torch.autograd.Function):
    """``(x - mean) / sqrt(var + eps)`` with mean and var over ``dims`` of every rank's slab.

    Each rank sends its count, mean and sum of squared deviations (computed locally in one
    pass) and the global moments are combined in float64 (Chan et al.), which avoids the
    cancellation of a sum-of-squares formula. Backward all-reduces the two sums the input
    gradient needs. Returns the normalised tensor, the global mean, the biased variance and
    the global count.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, dims: tuple[int, ...], eps: float, grid: ProcessGrid, what: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        var, mean = torch.var_mean(work, dims, correction=0, keepdim=True)
        count = torch.full_like(mean, float(_count(work, dims)), dtype=torch.float64)
        local = torch.stack([count, mean.double(), var.double() * count])
        parts = all_gather(local, grid.group, f"{what} (statistics)")
        total = parts[:, 0].sum(0)
        g_mean = (parts[:, 0] * parts[:, 1]).sum(0) / total
        m2 = (parts[:, 2] + parts[:, 0] * (parts[:, 1] - g_mean) ** 2).sum(0)
        g_var = m2 / total
        rstd = (g_var + eps).rsqrt().to(x.dtype)
        shift = g_mean.to(x.dtype)
        xhat = (x - shift).mul_(rstd)
        # The input, not the output, is kept for backward: networks often apply an in-place
        # activation to a norm's output (DynUNet's LeakyReLU does).
        ctx.save_for_backward(x, shift, rstd)
        ctx.dims, ctx.grid, ctx.what, ctx.total = dims, grid, what, total
        ctx.mark_non_differentiable(g_mean, g_var, total)
        return xhat, g_mean, g_var, total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        x, shift, rstd = ctx.saved_tensors
        xhat = (x - shift).mul_(rstd)
        dims = ctx.dims
        sums = torch.stack([grad.sum(dims, keepdim=True), (grad * xhat).sum(dims, keepdim=True)])
        sums = all_reduce(sums.double(), ctx.grid.group, f"{ctx.what} (backward statistics)")
        means = (sums / ctx.total).to(grad.dtype)
        dx = (grad - means[0]).addcmul_(xhat, means[1], value=-1.0).mul_(rstd)
        return dx, None, None, None, None


def _count(x: torch.Tensor, dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= x.shape[d]
    return n


class SpatialNorm(nn.Module):
    """A normalisation layer whose statistics are all-reduced over the spatial ranks.

    Keeps the original's parameters and buffers (same objects, same names), so checkpoints
    load unchanged. Layers that use running statistics in eval mode need no communication.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(self, norm: Norm, grid: ProcessGrid, name: str) -> None:
        super().__init__()
        if isinstance(norm, nn.InstanceNorm3d) and norm.track_running_stats:
            raise UnsupportedLayerError(
                f"layer {name!r}: InstanceNorm3d with track_running_stats is not supported"
            )
        self.kind = type(norm).__name__
        self.weight = norm.weight
        self.bias = norm.bias
        self.eps = norm.eps
        self.groups = norm.num_groups if isinstance(norm, nn.GroupNorm) else 0
        if isinstance(norm, nn.BatchNorm3d):
            self.momentum = norm.momentum
            self.track_running_stats = norm.track_running_stats
            self.register_buffer("running_mean", norm.running_mean)
            self.register_buffer("running_var", norm.running_var)
            self.register_buffer("num_batches_tracked", norm.num_batches_tracked)
        self.grid = grid
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (this rank's slab) with statistics of the whole volume."""
        what = f"layer {self.name!r}"
        if self.kind == "BatchNorm3d" and self.track_running_stats and not self.training:
            return functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if self.kind == "GroupNorm":
            n, c = x.shape[:2]
            view = x.reshape(n, self.groups, c // self.groups, *x.shape[2:])
            xhat = _GlobalNormalise.apply(view, (2, 3, 4, 5), self.eps, self.grid, what)[0]
            xhat = xhat.reshape(x.shape)
        elif self.kind == "BatchNorm3d":
            xhat, mean, var, count = _GlobalNormalise.apply(
                x, (0, 2, 3, 4), self.eps, self.grid, what
            )
            if self.training and self.track_running_stats:
                self._update_running(mean.flatten(), var.flatten(), float(count.flatten()[0]))
        else:
            xhat = _GlobalNormalise.apply(x, (2, 3, 4), self.eps, self.grid, what)[0]
        if self.weight is not None:
            xhat = xhat * self.weight.view(1, -1, 1, 1, 1)
        if self.bias is not None:
            xhat = xhat + self.bias.view(1, -1, 1, 1, 1)
        return xhat

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """Update running statistics as `nn.BatchNorm3d` does (unbiased variance)."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * n / max(n - 1.0, 1.0)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
