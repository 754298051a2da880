"""The process grid: which ranks split which axes, and where this rank sits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medverse.core.errors import ConfigError
from medverse.parallel.spatial.comm import all_gather
from medverse.parallel.spatial.layout import Range, bounds_from_sizes, split_bounds


@dataclass(frozen=True)
class ProcessGrid:
    """Ranks of a process group laid out row-major over the split spatial axes.

    Attributes:
        group: The process group of the spatial ranks (None: the default group).
        axes: Split tensor dimensions of an ``N, C, D, H, W`` tensor (2, 3 or 4).
        shape: Ranks along each split axis; their product is the group size.
        coords: This rank's position along each split axis.
    """

    group: dist.ProcessGroup | None
    axes: tuple[int, ...]
    shape: tuple[int, ...]
    coords: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of ranks in the grid."""
        return math.prod(self.shape)

    def group_rank(self, coords: Sequence[int]) -> int:
        """Rank inside the group of the process at ``coords`` (row-major)."""
        index = 0
        for c, n in zip(coords, self.shape, strict=True):
            index = index * n + c
        return index

    def line(self, i: int) -> list[int]:
        """Group ranks on this rank's line along split axis ``i``, in axis order."""
        out = []
        for c in range(self.shape[i]):
            coords = list(self.coords)
            coords[i] = c
            out.append(self.group_rank(coords))
        return out

    def global_rank(self, group_rank: int) -> int:
        """Global rank (what point-to-point calls address) of a rank in the group."""
        if self.group is None:
            return group_rank
        return int(dist.get_global_rank(self.group, group_rank))

    def slab(self, shape: Sequence[int]) -> tuple[slice, ...]:
        """Index selecting this rank's slab of a full ``N, C, D, H, W`` tensor of ``shape``."""
        index = [slice(None)] * len(shape)
        for axis, n, c in zip(self.axes, self.shape, self.coords, strict=True):
            start, stop = split_bounds(shape[axis], n)[c]
            index[axis] = slice(start, stop)
        return tuple(index)

    def line_bounds(self, all_sizes: torch.Tensor, i: int) -> list[Range]:
        """Global ranges of the slabs on this rank's line along split axis ``i``.

        Args:
            all_sizes: ``(ranks, 3)`` spatial sizes of every rank's local tensor.
            i: Index into ``axes``.
        """
        column = self.axes[i] - 2
        return bounds_from_sizes([int(all_sizes[g, column]) for g in self.line(i)])


def make_grid(
    group: dist.ProcessGroup | None, axis: int | Sequence[int], shape: Sequence[int] | None
) -> ProcessGrid:
    """Build the grid of ``group`` over spatial ``axis`` (0 = D, 1 = H, 2 = W).

    Args:
        group: Process group of the spatial ranks (None: the default group).
        axis: One spatial axis or several (a grid of ranks over them).
        shape: Ranks along each axis; default: all ranks along one axis, or a near-square
            factorisation of the group size over several.

    Raises:
        ConfigError: For an axis outside 0-2, a repeated axis or a shape that does not
            multiply to the group size.
    """
    if not dist.is_initialized():
        raise ConfigError("spatial parallelism needs torch.distributed initialised first")
    spatial = (axis,) if isinstance(axis, int) else tuple(axis)
    if not spatial or len(set(spatial)) != len(spatial) or any(a not in (0, 1, 2) for a in spatial):
        raise ConfigError(f"split axes must be distinct spatial axes 0, 1 or 2; got {axis!r}")
    world = dist.get_world_size(group)
    dims = tuple(shape) if shape is not None else _factor(world, len(spatial))
    if len(dims) != len(spatial) or math.prod(dims) != world or min(dims) < 1:
        raise ConfigError(f"grid {dims} over axes {spatial} does not hold {world} ranks")
    rank, coords = dist.get_rank(group), []
    for n in reversed(dims):
        coords.append(rank % n)
        rank //= n
    return ProcessGrid(group, tuple(a + 2 for a in spatial), dims, tuple(reversed(coords)))


def _factor(world: int, parts: int) -> tuple[int, ...]:
    dims, remaining = [], world
    for p in range(parts, 1, -1):
        n = max(d for d in range(1, remaining + 1) if remaining % d == 0 and d**p <= remaining)
        dims.append(n)
        remaining //= n
    return (*dims, remaining)


def gather_sizes(x: torch.Tensor, grid: ProcessGrid, what: str) -> torch.Tensor:
    """Return every rank's local spatial sizes as a ``(ranks, 3)`` int64 CPU tensor."""
    mine = torch.tensor(list(x.shape[2:]), dtype=torch.int64, device=x.device)
    return all_gather(mine, grid.group, f"{what} (slab sizes)").cpu()
