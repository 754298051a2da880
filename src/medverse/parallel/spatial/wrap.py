"""`spatial_parallel`: run an unmodified network on a volume split across processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from medverse.parallel.spatial.comm import all_reduce
from medverse.parallel.spatial.conv import SpatialConv3d, SpatialConvTranspose3d
from medverse.parallel.spatial.errors import UnsupportedLayerError
from medverse.parallel.spatial.grid import ProcessGrid, gather_sizes, make_grid
from medverse.parallel.spatial.norm import SpatialNorm

# Leaf layers that act on each voxel alone (or not at all) and so run unchanged on a slab.
_POINTWISE = (
    nn.Identity, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Softmax, nn.Dropout,
)  # fmt: skip


_SPLIT = (SpatialConv3d, SpatialConvTranspose3d, SpatialNorm)


class _SumGrads(torch.autograd.Function):
    """Identity on the parameters; backward sums their gradients over the spatial ranks.

    Each rank's gradient is its slab's share; the network's gradient is their sum. One
    node for all parameters, so the engine runs it once, last, with one all-reduce.
    """

    @staticmethod
    def forward(ctx: Any, grid: ProcessGrid, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.grid = grid
        return tuple(p.view_as(p) for p in params)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        flat = torch.cat([g.reshape(-1) for g in grads if g is not None])
        all_reduce(flat, ctx.grid.group, "parameter gradients")
        out: list[torch.Tensor | None] = [None]
        offset = 0
        for g in grads:
            if g is None:
                out.append(None)
                continue
            out.append(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        return tuple(out)


class _Scatter(torch.autograd.Function):
    """Forward: this rank's slab of a volume every rank holds. Backward: the full gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, grid: ProcessGrid) -> torch.Tensor:
        ctx.grid, ctx.shape, ctx.index = grid, x.shape, grid.slab(x.shape)
        return x[ctx.index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        full = grad.new_zeros(ctx.shape)
        full[ctx.index] = grad
        return all_reduce(full, ctx.grid.group, "input gradient"), None


class _Gather(torch.autograd.Function):
    """Forward: the whole volume on every rank from the slabs. Backward: this rank's slab."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, grid: ProcessGrid) -> torch.Tensor:
        sizes = gather_sizes(y, grid, "gathering the output")
        shape = list(y.shape)
        for i, dim in enumerate(grid.axes):
            shape[dim] = grid.line_bounds(sizes, i)[-1][1]
        full = y.new_zeros(shape)
        ctx.index = grid.slab(shape)
        full[ctx.index] = y
        return all_reduce(full, grid.group, "gathering the output")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        # Whatever follows the gather runs identically on every rank, so each rank's
        # gradient is already the whole gradient: keep this rank's slab of it.
        return grad[ctx.index].contiguous(), None


class SpatialParallel(nn.Module):
    """A network whose every activation is split across the ranks of a process grid.

    Args:
        network: The network, with its convolutions and norms already replaced.
        grid: The process grid.
        gather_output: Return the whole output on every rank (else this rank's slab).
    """

    def __init__(self, network: nn.Module, grid: ProcessGrid, gather_output: bool = True):
        super().__init__()
        _refuse_tied_parameters(network)
        self.network = network
        self.grid = grid
        self.gather_output = gather_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run on ``x``, the whole ``N, C, D, H, W`` volume (the same on every rank)."""
        local = self.scatter(x)
        names, params = zip(*self.network.named_parameters(), strict=True)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            params = _SumGrads.apply(self.grid, *params)
        # tie_weights=False: a layer reachable under two names is one module object, so one
        # swap covers both (torch 2.13's tied-weight path does not restore such modules).
        y = functional_call(
            self.network, dict(zip(names, params, strict=True)), (local,), tie_weights=False
        )
        if not isinstance(y, torch.Tensor):
            raise UnsupportedLayerError(
                f"network returned {type(y).__name__}; spatial_parallel needs one tensor "
                "(turn deep supervision off)"
            )
        return self.gather(y) if self.gather_output else y

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """Return this rank's slab of ``x`` (differentiable)."""
        out: torch.Tensor = _Scatter.apply(x, self.grid)
        return out

    def gather(self, y: torch.Tensor) -> torch.Tensor:
        """Return the whole tensor from each rank's slab ``y`` (differentiable)."""
        out: torch.Tensor = _Gather.apply(y, self.grid)
        return out


def spatial_parallel(
    network: nn.Module,
    process_group: torch.distributed.ProcessGroup | None = None,
    axis: int | Sequence[int] = 0,
    *,
    grid_shape: Sequence[int] | None = None,
    gather_output: bool = True,
) -> SpatialParallel:
    """Return ``network`` running on a volume split across the ranks of ``process_group``.

    Conv3d, ConvTranspose3d, InstanceNorm3d, BatchNorm3d and GroupNorm layers are replaced
    in place by split-volume versions that keep the same parameters (so a checkpoint loads
    and an optimiser built on ``network.parameters()`` still works); the network's own code
    is not changed. Every rank must call the result with the same whole volume. Outputs and
    parameter gradients equal the single-process ones up to float rounding.

    Args:
        network: A 3D network (e.g. the DynUNet or UNet presets of `build_network`).
        process_group: The spatial ranks (None: all ranks).
        axis: Spatial axis to split (0 = D, 1 = H, 2 = W), or several for a grid of ranks.
        grid_shape: Ranks along each split axis (default: all on one axis, or near-square).
        gather_output: Return the whole output on every rank (else this rank's slab).

    Raises:
        ConfigError: If torch.distributed is not initialised or the grid does not fit.
        UnsupportedLayerError: If a layer mixes voxels in a way not handled here (pooling,
            interpolation, non-zero padding modes).
    """
    grid = make_grid(process_group, axis, grid_shape)
    _replace(network, grid, "")
    return SpatialParallel(network, grid, gather_output)


def _refuse_tied_parameters(network: nn.Module) -> None:
    owners: dict[int, set[int]] = {}
    for name, param in network.named_parameters(remove_duplicate=False):
        module = network.get_submodule(name.rpartition(".")[0])
        owners.setdefault(id(param), set()).add(id(module))
        if len(owners[id(param)]) > 1:
            raise UnsupportedLayerError(
                f"parameter {name!r} is shared by two different layers (tied weights); "
                "not supported by spatial_parallel"
            )


def _replace(
    module: nn.Module, grid: ProcessGrid, prefix: str, done: dict[int, nn.Module] | None = None
) -> None:
    # A network may hold one layer under two names (DynUNet keeps its encoder in two lists):
    # both names get the same replacement.
    done = {} if done is None else done
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, _SPLIT):
            continue
        new = done.get(id(child)) or _replacement(child, grid, path)
        if new is not None:
            done[id(child)] = new
            setattr(module, name, new)
        else:
            _replace(child, grid, f"{path}.", done)


def _replacement(child: nn.Module, grid: ProcessGrid, path: str) -> nn.Module | None:
    if isinstance(child, nn.Conv3d):
        return SpatialConv3d(child, grid, path)
    if isinstance(child, nn.ConvTranspose3d):
        return SpatialConvTranspose3d(child, grid, path)
    if isinstance(child, nn.InstanceNorm3d | nn.BatchNorm3d | nn.GroupNorm):
        return SpatialNorm(child, grid, path)
    if not list(child.children()) and not isinstance(child, _POINTWISE):
        raise UnsupportedLayerError(
            f"layer {path!r} ({type(child).__name__}) cannot run on a split volume"
        )
    return None
