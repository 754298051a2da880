"""Whole-volume inference on N local ranks, callable like the network it wraps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medverse.core.errors import ConfigError
from medverse.parallel.spatial.launch import run_ranks
from medverse.parallel.spatial.wrap import spatial_parallel


def _infer(network: nn.Module, x: torch.Tensor, axis: int | Sequence[int]) -> torch.Tensor | None:
    # Under NCCL the launcher has set this rank's GPU; under gloo everything stays on the CPU.
    device = torch.device("cuda") if torch.distributed.get_backend() == "nccl" else x.device
    split = spatial_parallel(network.eval().to(device), None, axis)
    with torch.inference_mode():
        y = split(x.to(device))
    return y.cpu() if torch.distributed.get_rank() == 0 else None


class SpatialRunner(nn.Module):
    """Run ``network`` on each whole input split over ``ranks`` local processes.

    The caller's process does no network work; each call starts the ranks (forked from a
    server that imported torch once), sends them the network and the volume, and returns
    rank 0's whole output. Outputs equal ``network(x)`` up to float rounding.

    Args:
        network: A 3D network (see `spatial_parallel`), in eval mode for inference.
        ranks: Number of processes (>= 2).
        axis: Spatial axis (or axes) to split.
        timeout_s: Deadline per call.
        threads: torch threads per rank.
        backend: ``gloo`` (CPU) or ``nccl`` (one GPU per rank: needs ``ranks`` GPUs).

    Raises:
        ConfigError: For fewer than 2 ranks, or fewer GPUs than ranks under NCCL.
    """

    def __init__(
        self,
        network: nn.Module,
        ranks: int,
        axis: int | Sequence[int] = 0,
        *,
        timeout_s: float = 3600.0,
        threads: int = 1,
        backend: str = "gloo",
    ) -> None:
        super().__init__()
        if ranks < 2:
            raise ConfigError(f"spatial parallel inference needs 2 or more ranks, got {ranks}")
        if backend == "nccl" and torch.cuda.device_count() < ranks:
            raise ConfigError(
                f"NCCL needs one GPU per rank: {ranks} ranks, {torch.cuda.device_count()} GPU(s)"
            )
        self.network = network
        self.ranks, self.axis, self.timeout_s, self.threads = ranks, axis, timeout_s, threads
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the network's output for the whole ``N, C, D, H, W`` volume ``x``."""
        device = x.device
        outputs = run_ranks(
            _infer,
            self.ranks,
            (self.network.cpu(), x.detach().cpu(), self.axis),
            timeout_s=self.timeout_s,
            threads=self.threads,
            backend=self.backend,
        )
        out: torch.Tensor = outputs[0]
        return out.to(device)
