"""DDP in one place: detect torchrun's environment, set up the process group, shard, reduce."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medverse.core.errors import ConfigError

T = TypeVar("T")

# The variables torchrun (and ``launch_local``) set for every process it starts.
_ENV_RANK, _ENV_WORLD, _ENV_LOCAL = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly one-process) job.

    Attributes:
        rank: Global rank, 0 on the main process.
        world_size: Number of processes in the job.
        local_rank: Rank on this machine (picks the CUDA device).
        device: The device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def env_world_size() -> int:
    """Return ``WORLD_SIZE`` as set by torchrun, or 1 outside a distributed launch."""
    return int(os.environ.get(_ENV_WORLD, "1"))


def env_rank() -> int:
    """Return ``RANK`` as set by torchrun, or 0 outside a distributed launch."""
    return int(os.environ.get(_ENV_RANK, "0"))


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """Return the device for ``choice`` (``auto``, ``cpu`` or ``cuda``) on this local rank.

    Raises:
        ConfigError: If CUDA is asked for and none is present.
    """
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {choice!r}; use auto, cpu or cuda")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device_choice: str = "auto") -> DistContext:
    """Join the process group torchrun described in the environment (no-op for one process).

    The backend is NCCL on CUDA and gloo on the CPU.

    Args:
        device_choice: ``auto``, ``cpu`` or ``cuda``.
    """
    world = env_world_size()
    rank = int(os.environ.get(_ENV_RANK, "0"))
    local_rank = int(os.environ.get(_ENV_LOCAL, "0"))
    device = select_device(device_choice, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group, if this process joined one."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op for one process)."""
    if ctx.is_distributed:
        dist.barrier()


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """Return this rank's share of ``items`` (every ``world_size``-th item from ``rank``)."""
    return list(items[ctx.rank :: ctx.world_size])


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Return the element-wise sum of ``tensor`` over all ranks (a copy; input untouched)."""
    out = tensor.detach().clone()
    if ctx.is_distributed:
        work = out.to(ctx.device) if ctx.device.type == "cuda" else out
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        out = work.to(tensor.device)
    return out


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Return the mean of a Python float over all ranks."""
    total = all_reduce_sum(torch.tensor([value], dtype=torch.float64), ctx)
    return float(total.item()) / ctx.world_size


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Return rank 0's ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def all_gather_objects(obj: T, ctx: DistContext) -> list[T]:
    """Return every rank's ``obj``, indexed by rank (picklable objects)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """Return True on every rank if ``flag`` is True on any rank."""
    if not ctx.is_distributed:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)]), ctx).item() > 0)


def wrap_model(network: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap ``network`` in DistributedDataParallel when several processes take part."""
    if not ctx.is_distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=ids)


def unwrap_model(network: nn.Module) -> nn.Module:
    """Return the plain module inside a DDP wrapper (or the module itself)."""
    inner = getattr(network, "module", None)
    return inner if isinstance(inner, nn.Module) else network


def free_port() -> int:
    """Return a TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child(
    local_rank: int, nprocs: int, port: int, threads: int, fn: Callable[..., Any], args: tuple
) -> None:
    os.environ.update(
        {
            _ENV_RANK: str(local_rank),
            _ENV_LOCAL: str(local_rank),
            _ENV_WORLD: str(nprocs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(threads)
    fn(*args)


def launch_local(fn: Callable[..., Any], nprocs: int, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes on this machine, as torchrun would.

    Each child sees ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``, so ``init_distributed`` joins the group. CPU threads are split evenly.
    ``fn`` must be importable (a module-level function). Blocks until all children exit.

    Raises:
        torch.multiprocessing.ProcessRaisedException: If a child raised.
    """
    threads = max(1, (os.cpu_count() or 1) // nprocs)
    mp.start_processes(
        _child,
        args=(nprocs, free_port(), threads, fn, args),
        nprocs=nprocs,
        join=True,
        start_method="spawn",
    )
