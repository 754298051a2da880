"""Point-to-point and collective steps, each wrapped so a failed peer becomes a clear error."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from medverse.parallel.spatial.errors import RankFailedError

# Tags keep the two directions apart when two ranks swap halos with each other.
TAG_TO_RIGHT, TAG_TO_LEFT = 11, 12


def exchange(
    sends: Sequence[tuple[int, torch.Tensor, int]],
    recvs: Sequence[tuple[int, torch.Tensor, int]],
    group: dist.ProcessGroup | None,
    what: str,
) -> None:
    """Post every send and receive at once, then wait for all (no ordering deadlock).

    Args:
        sends: ``(global peer rank, contiguous tensor, tag)`` to send.
        recvs: ``(global peer rank, buffer to fill, tag)`` to receive into.
        group: The process group the peers belong to.
        what: The layer and step, named in the error if a peer fails.

    Raises:
        RankFailedError: If a peer died, closed its connection or timed out.
    """
    works, peers = [], []
    try:
        for peer, tensor, tag in sends:
            works.append(dist.isend(tensor, dst=peer, group=group, tag=tag))
            peers.append(peer)
        for peer, buffer, tag in recvs:
            works.append(dist.irecv(buffer, src=peer, group=group, tag=tag))
            peers.append(peer)
        for work in works:
            if work is not None:
                work.wait()
    except (RuntimeError, dist.DistError) as e:
        raise _failed(what, f"exchanging halos with rank(s) {sorted(set(peers))}", e) from e


def all_gather(tensor: torch.Tensor, group: dist.ProcessGroup | None, what: str) -> torch.Tensor:
    """Return ``tensor`` from every rank of ``group``, stacked along a new first axis."""
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    try:
        dist.all_gather(out, tensor.contiguous(), group=group)
    except (RuntimeError, dist.DistError) as e:
        raise _failed(what, "gathering from all ranks", e) from e
    return torch.stack(out)


def all_reduce(tensor: torch.Tensor, group: dist.ProcessGroup | None, what: str) -> torch.Tensor:
    """Sum ``tensor`` over ``group`` in place and return it."""
    try:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    except (RuntimeError, dist.DistError) as e:
        raise _failed(what, "summing over all ranks", e) from e
    return tensor


def _failed(what: str, step: str, e: BaseException) -> RankFailedError:
    rank = dist.get_rank() if dist.is_initialized() else 0
    cause = " ".join(str(e).split())[:300]
    return RankFailedError(
        f"rank {rank}: {what}: {step} failed; a peer rank died, hung past the timeout or "
        f"closed its connection ({cause})"
    )
