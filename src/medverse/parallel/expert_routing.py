"""Top-k expert routing with a capacity limit, the load-balancing loss, and the one-process MoE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from medverse.core.errors import ConfigError


@dataclass(frozen=True)
class RoutingConfig:
    """How tokens are routed to experts.

    Attributes:
        num_experts: Number of experts the gate chooses from.
        top_k: Experts each token is sent to (1 = Switch, 2 = GShard).
        capacity_factor: Slots per expert relative to an even share of the ``tokens * top_k``
            assignments in one group; None means no limit (every assignment is kept).
        min_capacity: Fewest slots per expert when a capacity factor is set.
    """

    num_experts: int
    top_k: int = 2
    capacity_factor: float | None = 1.25
    min_capacity: int = 1

    def __post_init__(self) -> None:
        if self.num_experts < 1:
            raise ConfigError(f"num_experts must be at least 1, got {self.num_experts}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(f"top_k must be in 1..{self.num_experts}, got {self.top_k}")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ConfigError(f"capacity_factor must be positive, got {self.capacity_factor}")
        if self.min_capacity < 0:
            raise ConfigError(f"min_capacity must be >= 0, got {self.min_capacity}")

    def capacity(self, tokens: int) -> int | None:
        """Return the slots per expert for a group of ``tokens`` (None: unlimited)."""
        if self.capacity_factor is None:
            return None
        share = self.capacity_factor * tokens * self.top_k / self.num_experts
        return max(self.min_capacity, math.ceil(share))


@dataclass(frozen=True)
class Routing:
    """Where one group's tokens go.

    Attributes:
        probs: Gate probabilities, ``[tokens, experts]``.
        experts: Chosen experts per token, best first, ``[tokens, top_k]``.
        weights: Combination weight of each choice, ``[tokens, top_k]``.
        kept: False where the choice overflowed its expert's capacity, ``[tokens, top_k]``.
        aux_loss: Load-balancing loss of the group (scalar, 1.0 when perfectly balanced).
    """

    probs: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor
    kept: torch.Tensor
    aux_loss: torch.Tensor

    @property
    def dropped(self) -> int:
        """Number of (token, choice) assignments dropped for lack of capacity."""
        return int((~self.kept).sum().item())

    def tokens_for(self, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(token indices, choice indices)`` of the kept assignments to ``expert``.

        Tokens come in ascending order, so every caller sees one fixed order.
        """
        hit = (self.experts == expert) & self.kept
        token, choice = hit.nonzero(as_tuple=True)
        return token, choice


def route(logits: torch.Tensor, config: RoutingConfig) -> Routing:
    """Route one group of tokens: top-k choice, capacity in priority order, balance loss.

    Priority for capacity follows GShard: every token's first choice is placed before any
    second choice, and within a choice tokens are placed in order. Assignments past an
    expert's capacity are dropped (``kept`` is False); the caller decides what a token with
    dropped choices receives.

    Args:
        logits: Gate logits, ``[tokens, num_experts]``.
        config: Routing settings.

    Returns:
        The routing of this group.
    """
    tokens, num_experts = logits.shape
    if num_experts != config.num_experts:
        raise ConfigError(f"gate gives {num_experts} logits, expected {config.num_experts}")
    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_i = probs.topk(config.top_k, dim=-1)
    # k = 1 keeps the raw probability so the gate is trained by the task loss (Switch);
    # k > 1 renormalises over the chosen experts.
    weights = top_p if config.top_k == 1 else top_p / top_p.sum(dim=-1, keepdim=True)
    one_hot = functional.one_hot(top_i, num_experts)  # [tokens, k, experts]
    capacity = config.capacity(tokens)
    if capacity is None:
        kept = torch.ones_like(top_i, dtype=torch.bool)
    else:
        by_choice = one_hot.transpose(0, 1).reshape(-1, num_experts)  # choice-major order
        position = (torch.cumsum(by_choice, dim=0) - 1) * by_choice
        slot = position.sum(dim=-1).reshape(config.top_k, tokens).transpose(0, 1)
        kept = slot < capacity
    load = one_hot.float().sum(dim=(0, 1)) / max(1, tokens * config.top_k)
    importance = probs.mean(dim=0)
    aux_loss = num_experts * (load * importance).sum()
    return Routing(probs, top_i, weights.to(logits.dtype), kept, aux_loss)


def combine(routing: Routing, outputs: list[torch.Tensor], out_features: int) -> torch.Tensor:
    """Weight and sum the experts' outputs back per token (dropped choices add nothing).

    Args:
        routing: The group's routing.
        outputs: Per expert, its outputs for ``routing.tokens_for(expert)`` in that order.
        out_features: Width of an expert's output.

    Returns:
        ``[tokens, out_features]``.
    """
    tokens, top_k = routing.experts.shape
    dtype = outputs[0].dtype if outputs else routing.weights.dtype
    slots = routing.weights.new_zeros((tokens, top_k, out_features), dtype=dtype)
    for expert, result in enumerate(outputs):
        token, choice = routing.tokens_for(expert)
        slots = slots.index_put((token, choice), result)
    return (routing.weights.unsqueeze(-1).to(dtype) * slots).sum(dim=1)


@dataclass(frozen=True)
class MoEResult:
    """What an MoE layer returns.

    Attributes:
        output: Combined expert outputs, ``[tokens, out_features]``.
        routings: One routing per token group (per rank in expert parallelism).
        aux_loss: Mean load-balancing loss over the groups.
    """

    output: torch.Tensor
    routings: list[Routing]
    aux_loss: torch.Tensor

    @property
    def dropped(self) -> int:
        """Assignments dropped for lack of capacity, over all groups."""
        return sum(r.dropped for r in self.routings)


class MoELayer(nn.Module):
    """Mixture-of-experts layer on one process; capacity is enforced per group of tokens.

    The batch is cut into ``groups`` contiguous groups, each routed with its own capacity,
    exactly as expert parallelism over ``groups`` ranks cuts it (one group per rank), so the
    two give the same result.

    Args:
        gate: Module mapping tokens ``[T, d]`` to gate logits ``[T, num_experts]``.
        experts: One module per expert mapping ``[n, d]`` to ``[n, out_features]``.
        config: Routing settings.
        out_features: Width of an expert's output.
    """

    def __init__(
        self, gate: nn.Module, experts: nn.ModuleList, config: RoutingConfig, out_features: int
    ) -> None:
        super().__init__()
        if len(experts) != config.num_experts:
            raise ConfigError(f"{len(experts)} experts given, config says {config.num_experts}")
        self.gate = gate
        self.experts = experts
        self.config = config
        self.out_features = out_features

    def forward(
        self, tokens: torch.Tensor, groups: int = 1, config: RoutingConfig | None = None
    ) -> MoEResult:
        """Route, run the experts and combine.

        Args:
            tokens: ``[T, d]``.
            groups: Token groups with their own capacity, as ranks in expert parallelism.
            config: Routing for this call (e.g. no capacity limit at inference); the layer's
                own config when None. Its ``num_experts`` must match the layer.
        """
        config = config or self.config
        parts = list(torch.tensor_split(tokens, groups))
        routings = [route(self.gate(part), config) for part in parts]
        per_group: list[list[torch.Tensor]] = [[] for _ in parts]
        for index, expert in enumerate(self.experts):
            picked = [part[r.tokens_for(index)[0]] for part, r in zip(parts, routings)]
            result = expert(torch.cat(picked)) if picked else tokens.new_zeros((0,))
            for group, chunk in enumerate(result.split([len(p) for p in picked])):
                per_group[group].append(chunk)
        outputs = [combine(r, o, self.out_features) for r, o in zip(routings, per_group)]
        aux = torch.stack([r.aux_loss for r in routings]).mean()
        return MoEResult(torch.cat(outputs), routings, aux)
