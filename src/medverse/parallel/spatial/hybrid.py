"""Spatial and data parallelism together: DDP over groups of spatial ranks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medverse.core.errors import ConfigError
from medverse.parallel.spatial.wrap import spatial_parallel


@dataclass(frozen=True)
class HybridGroups:
    """The two process groups this rank belongs to.

    Attributes:
        spatial: Ranks that split one volume between them (consecutive global ranks).
        data: Ranks at the same place in every spatial group (one per replica).
        replica: Which replica (data-parallel index) this rank works for.
        replicas: Number of replicas.
    """

    spatial: dist.ProcessGroup
    data: dist.ProcessGroup
    replica: int
    replicas: int


def hybrid_groups(spatial_ranks: int) -> HybridGroups:
    """Split the world into replicas of ``spatial_ranks`` consecutive ranks each.

    Every rank must call this, in the same order relative to other group creation.

    Raises:
        ConfigError: If the world size is not a multiple of ``spatial_ranks``.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if spatial_ranks < 1 or world % spatial_ranks:
        raise ConfigError(
            f"{world} ranks cannot be split into spatial groups of {spatial_ranks}; "
            "the world size must be a multiple of the spatial ranks"
        )
    replicas = world // spatial_ranks
    spatial = data = None
    for r in range(replicas):
        group = dist.new_group(list(range(r * spatial_ranks, (r + 1) * spatial_ranks)))
        if rank // spatial_ranks == r:
            spatial = group
    for s in range(spatial_ranks):
        group = dist.new_group(list(range(s, world, spatial_ranks)))
        if rank % spatial_ranks == s:
            data = group
    assert spatial is not None and data is not None  # every rank is in one of each
    return HybridGroups(spatial, data, rank // spatial_ranks, replicas)


def hybrid_parallel(
    network: nn.Module,
    groups: HybridGroups,
    axis: int | Sequence[int] = 0,
    *,
    grid_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Return ``network`` split over ``groups.spatial`` and data-parallel over ``groups.data``.

    Each replica feeds its own whole volume (the same on every rank of its spatial group);
    parameter gradients are summed inside the spatial group, then averaged over replicas by
    DDP, exactly as one process averaging the replicas' losses would get.

    Args:
        network: A 3D network (see `spatial_parallel`).
        groups: From `hybrid_groups`.
        axis: Spatial axis or axes to split.
        grid_shape: Ranks along each split axis.
    """
    split = spatial_parallel(network, groups.spatial, axis, grid_shape=grid_shape)
    if groups.replicas == 1:
        return split
    return DistributedDataParallel(split, process_group=groups.data)
