"""The decision networks: a mixture of specialty experts with a top-k gate, and a dense MLP."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from medverse.core.errors import ConfigError
from medverse.parallel.expert_routing import MoELayer, MoEResult, RoutingConfig


class GateInputs(StrEnum):
    """What the gate reads of the masked input ``[values, mask]``."""

    ALL = "all"  # every encoded value and every mask bit
    VALUES = "values"  # the values alone (a missing one is its learned default)
    MASK = "mask"  # which fields were recorded, not their values


@dataclass(frozen=True)
class MoEConfig:
    """Shape and routing of the mixture of experts.

    Attributes:
        hidden: Hidden units of each expert's MLP.
        top_k: Experts each patient is sent to.
        capacity_factor: Training-time capacity per expert relative to an even share of a
            batch; patients past it lose that expert (Switch-style drop, counted). None: no
            limit. Inference never drops: a patient always gets all ``top_k`` experts.
        aux_weight: Weight of the load-balancing loss in training.
        dropout: Dropout on each expert's hidden units in training (0: none).
        shared_linear: Add a linear (logistic) expert over all columns that every patient
            gets, not routed (a shared expert): the routed MLP experts then learn what a
            logistic model misses.
        gate_inputs: What the gate reads (``GateInputs``; kept as a plain string).
    """

    hidden: int = 16
    top_k: int = 2
    capacity_factor: float | None = 1.25
    aux_weight: float = 0.01
    dropout: float = 0.0
    shared_linear: bool = False
    gate_inputs: str = GateInputs.ALL.value

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ConfigError(f"hidden must be at least 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.gate_inputs not in set(GateInputs):
            raise ConfigError(
                f"gate_inputs must be one of {[g.value for g in GateInputs]}, "
                f"got {self.gate_inputs!r}"
            )
        object.__setattr__(self, "gate_inputs", GateInputs(self.gate_inputs).value)


def hidden_mlp(inputs: int, hidden: int, dropout: float) -> nn.Sequential:
    """``Linear -> GELU [-> Dropout] -> Linear(1)``; no dropout layer when ``dropout`` is 0."""
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), *drop, nn.Linear(hidden, 1))


class MaskedInput(nn.Module):
    """Missing values (NaN) become a learned per-column default, and a mask bit says so.

    Output ``[T, 2C]``: the values (recorded or default) then the mask (1 = recorded).
    Nothing is filled with zero: the defaults are trained with the rest of the network.

    Args:
        columns: Number of encoded columns ``C``.
    """

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.defaults = nn.Parameter(torch.zeros(columns))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Return ``[filled values, mask]``."""
        recorded = torch.isfinite(values)
        filled = torch.where(recorded, values, self.defaults.expand_as(values))
        return torch.cat([filled, recorded.to(values.dtype)], dim=-1)


class PickedLinear(nn.Module):
    """A linear map of some token columns (a gate that reads part of the input).

    Args:
        picks: Token columns read.
        out_features: Outputs (experts, for a gate).
    """

    def __init__(self, picks: list[int], out_features: int) -> None:
        super().__init__()
        self.register_buffer("picks", torch.tensor(picks, dtype=torch.long))
        self.linear = nn.Linear(len(picks), out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return ``[n, out_features]`` for ``[n, d]`` tokens."""
        result: torch.Tensor = self.linear(tokens.index_select(1, self.get_buffer("picks")))
        return result


def build_gate(inputs: str, total_columns: int, experts: int) -> nn.Module:
    """The gate over ``[values, mask]`` tokens of ``total_columns`` encoded columns.

    ``all`` is a plain ``nn.Linear`` (the layout of earlier model files).
    """
    if inputs == GateInputs.ALL:
        return nn.Linear(2 * total_columns, experts)
    start = 0 if inputs == GateInputs.VALUES else total_columns
    return PickedLinear(list(range(start, start + total_columns)), experts)


class ViewExpert(nn.Module):
    """An expert MLP that reads only its specialty's columns (values and mask bits).

    Args:
        columns: Encoded columns the expert reads.
        total_columns: All encoded columns ``C`` (the mask bits start at ``C``).
        hidden: Hidden units.
        dropout: Dropout on the hidden units in training.
    """

    def __init__(
        self, columns: list[int], total_columns: int, hidden: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        picks = [*columns, *(c + total_columns for c in columns)]
        self.register_buffer("picks", torch.tensor(picks, dtype=torch.long))
        self.net = hidden_mlp(len(picks), hidden, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return ``[n, 1]`` logits for ``[n, 2C]`` tokens."""
        picks = self.get_buffer("picks")
        result: torch.Tensor = self.net(tokens.index_select(1, picks))
        return result


@dataclass(frozen=True)
class DecisionOutput:
    """Logits and, for the MoE, the routing that produced them."""

    logits: torch.Tensor
    moe: MoEResult | None = None

    @property
    def aux_loss(self) -> torch.Tensor:
        """Load-balancing loss (0 for a dense network)."""
        return self.moe.aux_loss if self.moe is not None else self.logits.new_zeros(())


class MoEClassifier(nn.Module):
    """Binary risk model: masked input, top-k gate, specialty experts, optional linear expert.

    Args:
        expert_columns: Per expert, the encoded columns it reads.
        total_columns: Number of encoded columns.
        config: Shape and routing.
    """

    def __init__(
        self, expert_columns: list[list[int]], total_columns: int, config: MoEConfig
    ) -> None:
        super().__init__()
        self.config = config
        self.inputs = MaskedInput(total_columns)
        experts = nn.ModuleList(
            ViewExpert(cols, total_columns, config.hidden, config.dropout)
            for cols in expert_columns
        )
        routing = RoutingConfig(len(experts), config.top_k, config.capacity_factor)
        gate = build_gate(config.gate_inputs, total_columns, len(experts))
        self.moe = MoELayer(gate, experts, routing, 1)
        self.inference_routing = dataclasses.replace(routing, capacity_factor=None)
        self.bias = nn.Parameter(torch.zeros(1))
        self.shared = nn.Linear(2 * total_columns, 1) if config.shared_linear else None

    def shared_logit(self, tokens: torch.Tensor) -> torch.Tensor:
        """The shared linear expert's logit ``[T]`` (zeros without one)."""
        if self.shared is None:
            return tokens.new_zeros(len(tokens))
        result: torch.Tensor = self.shared(tokens).squeeze(-1)
        return result

    def forward(self, values: torch.Tensor) -> DecisionOutput:
        """Return logits ``[T]`` for encoded values ``[T, C]`` (NaN = missing)."""
        tokens = self.inputs(values)
        routing = None if self.training else self.inference_routing
        result = self.moe(tokens, config=routing)
        logits = result.output.squeeze(-1) + self.bias + self.shared_logit(tokens)
        return DecisionOutput(logits, result)


class DenseClassifier(nn.Module):
    """The dense baseline: the same masked input, then one MLP over all columns.

    Args:
        total_columns: Number of encoded columns.
        hidden: Hidden units (``dense_hidden_for`` matches a parameter budget).
        dropout: Dropout on the hidden units in training.
    """

    def __init__(self, total_columns: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.inputs = MaskedInput(total_columns)
        self.net = hidden_mlp(2 * total_columns, hidden, dropout)

    def forward(self, values: torch.Tensor) -> DecisionOutput:
        """Return logits ``[T]``."""
        return DecisionOutput(self.net(self.inputs(values)).squeeze(-1))


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def dense_hidden_for(total_columns: int, budget: int) -> int:
    """Return the hidden width whose ``DenseClassifier`` has closest to ``budget`` parameters."""
    per_unit = 2 * total_columns + 2  # one input row + bias + one output weight
    fixed = total_columns + 1  # defaults + output bias
    return max(1, round((budget - fixed) / per_unit))
