"""Expert parallelism: experts placed on ranks, tokens dispatched and returned with all_to_all.

Every rank routes its own tokens with the replicated gate (capacity is enforced per rank, as
``MoELayer`` enforces it per group), sends each kept token to the rank that owns its expert
with ``all_to_all_single``, and receives the results the same way. The exchange is an
autograd function, so gradients reach the experts on their owning ranks and flow back to the
tokens. gloo (CPU) and NCCL (CUDA) both support ``all_to_all_single`` with uneven splits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medverse.core.errors import ConfigError
from medverse.parallel.expert_routing import MoEResult, Routing, RoutingConfig, combine, route


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` whose backward sends the gradients back the way they came."""

    @staticmethod
    def forward(
        ctx: Any, tensor: torch.Tensor, out_splits: list[int], in_splits: list[int]
    ) -> torch.Tensor:
        ctx.splits = (out_splits, in_splits)
        return _exchange(tensor, out_splits, in_splits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        out_splits, in_splits = ctx.splits
        return _exchange(grad, in_splits, out_splits), None, None


def _exchange(tensor: torch.Tensor, out_splits: list[int], in_splits: list[int]) -> torch.Tensor:
    out = tensor.new_empty((sum(out_splits), *tensor.shape[1:]))
    dist.all_to_all_single(out, tensor.contiguous(), out_splits, in_splits)
    return out


def all_to_all(tensor: torch.Tensor, out_splits: list[int], in_splits: list[int]) -> torch.Tensor:
    """Exchange rows of ``tensor`` between ranks (differentiable).

    Args:
        tensor: Rows to send, grouped by destination rank.
        out_splits: Rows to receive from each rank.
        in_splits: Rows to send to each rank.
    """
    result: torch.Tensor = _AllToAll.apply(tensor, out_splits, in_splits)
    return result


def exchange_counts(counts: torch.Tensor) -> torch.Tensor:
    """Send ``counts[r]`` (a row of ints per destination rank) and return the rows received."""
    received = torch.empty_like(counts)
    dist.all_to_all_single(received, counts.contiguous())
    return received


class ExpertParallelMoE(nn.Module):
    """MoE layer whose experts are spread over the ranks of the default process group.

    Rank ``r`` owns experts ``r * E/W ... (r+1) * E/W - 1``. The gate is replicated: call
    ``sync_replicated_grads`` after ``backward`` (or wrap the gate in DDP) so every rank
    applies the same update.

    Args:
        gate: Module mapping tokens ``[T, d]`` to gate logits ``[T, num_experts]``.
        local_experts: The experts this rank owns, in global order.
        config: Routing settings (``num_experts`` is the global count).
        out_features: Width of an expert's output.
    """

    def __init__(
        self,
        gate: nn.Module,
        local_experts: nn.ModuleList,
        config: RoutingConfig,
        out_features: int,
    ) -> None:
        super().__init__()
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        if config.num_experts % self.world:
            raise ConfigError(
                f"{config.num_experts} experts cannot be split evenly over {self.world} ranks"
            )
        self.per_rank = config.num_experts // self.world
        if len(local_experts) != self.per_rank:
            raise ConfigError(f"rank {self.rank} needs {self.per_rank} experts")
        self.gate = gate
        self.local_experts = local_experts
        self.config = config
        self.out_features = out_features

    def owned(self) -> range:
        """Global indices of the experts on this rank."""
        return range(self.rank * self.per_rank, (self.rank + 1) * self.per_rank)

    def forward(self, tokens: torch.Tensor) -> MoEResult:
        """Route this rank's tokens, run them on the owning ranks and combine here."""
        routing = route(self.gate(tokens), self.config)
        picks = [routing.tokens_for(e)[0] for e in range(self.config.num_experts)]
        sent = torch.tensor([len(p) for p in picks], dtype=torch.long, device=tokens.device)
        received = exchange_counts(sent.reshape(self.world, self.per_rank))  # [src, local]
        send_rows = sent.reshape(self.world, self.per_rank).sum(dim=1).tolist()
        recv_rows = received.sum(dim=1).tolist()
        inbox = all_to_all(tokens[torch.cat(picks)], recv_rows, send_rows)
        results = self._run_local_experts(inbox, received)
        back = all_to_all(results, send_rows, recv_rows)
        outputs = list(back.split(sent.tolist()))
        output = combine(routing, outputs, self.out_features)
        return MoEResult(output, [routing], routing.aux_loss)

    def _run_local_experts(self, inbox: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        """Run each local expert on its tokens from all ranks; return rows in inbox order."""
        chunks = inbox.split(received.flatten().tolist())  # source-major, then local expert
        by_source: list[list[torch.Tensor]] = [[] for _ in range(self.world)]
        for local, expert in enumerate(self.local_experts):
            mine = [chunks[src * self.per_rank + local] for src in range(self.world)]
            result = expert(torch.cat(mine))
            for src, part in enumerate(result.split([len(m) for m in mine])):
                by_source[src].append(part)
        return torch.cat([part for parts in by_source for part in parts])


def sync_replicated_grads(module: nn.Module) -> None:
    """Sum the gradients of a replicated module (the gate) over all ranks, in place."""
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)


def routing_summary(routing: Routing) -> dict[str, float]:
    """Return loads per expert and the dropped count of one routing, for logs and benchmarks."""
    load = torch.bincount(routing.experts[routing.kept], minlength=routing.probs.shape[1])
    summary = {f"expert_{i}": float(n) for i, n in enumerate(load.tolist())}
    summary["dropped"] = float(routing.dropped)
    return summary
