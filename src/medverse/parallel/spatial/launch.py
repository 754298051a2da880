"""Start N local ranks on gloo with a deadline: results back, or a clear error, never a hang."""

from __future__ import annotations

import os
import pickle
import queue
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medverse.parallel.ddp import free_port
from medverse.parallel.spatial.errors import RankFailedError

# After one rank fails, the others get this long to notice (their peer closed) and report.
_GRACE_S = 10.0


def _child(
    rank: int, world: int, port: int, timeout_s: float, threads: int, backend: str,
    fn: Callable[..., Any], args: tuple[Any, ...], results: Any,
) -> None:  # fmt: skip
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(threads)
    try:
        if backend == "nccl":  # one GPU per rank
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
        # Plain pickle, by value: torch's multiprocessing pickler would share tensors through
        # this process, which may have exited before the parent reads them.
        results.put((rank, True, pickle.dumps(fn(*args))))
    except Exception as e:  # reported to the parent as text
        results.put((rank, False, f"{type(e).__name__}: {' '.join(str(e).split())}"))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(
    fn: Callable[..., Any],
    nprocs: int,
    args: tuple[Any, ...] = (),
    *,
    timeout_s: float = 120.0,
    threads: int = 1,
    backend: str = "gloo",
) -> list[Any]:
    """Run ``fn(*args)`` on ``nprocs`` fresh processes joined in one group on 127.0.0.1.

    Args:
        fn: A module-level (importable) function; its return value must be picklable.
        nprocs: Number of ranks.
        args: Arguments passed to ``fn`` on every rank.
        timeout_s: Deadline for the whole run, and the gloo timeout of every collective.
        threads: torch threads per rank.
        backend: ``gloo`` (CPU tensors) or ``nccl`` (rank r computes on GPU r; ``fn`` moves
            its tensors there).

    Returns:
        ``fn``'s return value on each rank, by rank.

    Raises:
        RankFailedError: If a rank raised, died or the deadline passed; names every rank's
            outcome. Ranks still running then are killed.
    """
    # A fork server imports torch once; every later launch forks from it in milliseconds
    # (it never computes, so no thread pool is forked), instead of importing torch per rank.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "medverse.parallel.spatial", fn.__module__])
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_child,
            args=(r, nprocs, port, timeout_s, threads, backend, fn, args, results),
            daemon=True,
        )
        for r in range(nprocs)
    ]
    for p in procs:
        p.start()
    outcomes = _collect(procs, results, time.monotonic() + timeout_s)
    failed = {r: o for r, o in outcomes.items() if not o[0]}
    if failed or len(outcomes) < nprocs:
        lines = [
            f"rank {r}: {outcomes[r][1] if r in outcomes else _exit_text(procs[r])}"
            for r in range(nprocs)
            if r not in outcomes or not outcomes[r][0]
        ]
        raise RankFailedError(f"{len(lines)} of {nprocs} ranks failed: " + "; ".join(lines))
    return [pickle.loads(outcomes[r][1]) for r in range(nprocs)]


def _collect(procs: list[Any], results: Any, deadline: float) -> dict[int, tuple[bool, Any]]:
    outcomes: dict[int, tuple[bool, Any]] = {}
    while time.monotonic() < deadline and len(outcomes) < len(procs):
        try:
            rank, ok, value = results.get(timeout=0.2)
            outcomes[rank] = (ok, value)
        except queue.Empty:
            if all(p.exitcode is not None for p in procs):
                break  # every rank has exited; nothing more will arrive
        dead = any(p.exitcode not in (None, 0) for p in procs)
        if dead or any(not ok for ok, _ in outcomes.values()):
            deadline = min(deadline, time.monotonic() + _GRACE_S)
    for p in procs:
        p.join(timeout=0.5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
    return outcomes


def _exit_text(proc: Any) -> str:
    code = proc.exitcode
    if code is None or code == -9:
        return "did not finish before the deadline (killed)"
    return f"died with exit code {code} before reporting"
