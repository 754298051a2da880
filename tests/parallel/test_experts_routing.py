"""Top-k routing: capacity in priority order, dropped assignments, balance loss, combination."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medverse.core.errors import ConfigError
from medverse.parallel.expert_routing import MoELayer, RoutingConfig, route


def test_capacity_keeps_first_choices_before_second_choices() -> None:
    # Every token prefers expert 0, then expert 1: with 2 slots per expert only the first
    # two tokens get expert 0, and expert 1 fills with the first two second choices.
    logits = torch.tensor([[3.0, 2.0, 0.0, 0.0]] * 4)
    config = RoutingConfig(num_experts=4, top_k=2, capacity_factor=1.0)
    assert config.capacity(4) == 2
    routing = route(logits, config)
    assert routing.experts[:, 0].tolist() == [0, 0, 0, 0]
    assert routing.kept[:, 0].tolist() == [True, True, False, False]
    assert routing.kept[:, 1].tolist() == [True, True, False, False]
    assert routing.dropped == 4
    assert routing.tokens_for(0)[0].tolist() == [0, 1]


def test_no_capacity_keeps_every_choice_and_balanced_routing_scores_one() -> None:
    logits = torch.eye(4) * 5.0  # token i prefers expert i: perfectly balanced
    routing = route(logits, RoutingConfig(num_experts=4, top_k=1, capacity_factor=None))
    assert routing.dropped == 0
    assert routing.aux_loss.item() == pytest.approx(1.0)
    skewed = route(torch.tensor([[5.0, 0, 0, 0]] * 4), RoutingConfig(4, 1, None))
    assert skewed.aux_loss.item() > 3.0  # all load on one expert is penalised


def test_layer_output_is_the_gate_weighted_sum_of_kept_experts() -> None:
    torch.manual_seed(0)
    experts = nn.ModuleList(nn.Linear(3, 2) for _ in range(4))
    layer = MoELayer(nn.Linear(3, 4), experts, RoutingConfig(4, 2, 0.5), out_features=2)
    x = torch.randn(10, 3)
    result = layer(x)
    routing = result.routings[0]
    assert result.dropped > 0
    expected = torch.zeros(10, 2)
    for t in range(10):
        for c in range(2):
            if routing.kept[t, c]:
                e = int(routing.experts[t, c])
                expected[t] += routing.weights[t, c] * experts[e](x[t])
    torch.testing.assert_close(result.output, expected)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"num_experts": 0}, "num_experts"),
        ({"num_experts": 4, "top_k": 5}, "top_k"),
        ({"num_experts": 4, "capacity_factor": 0.0}, "capacity_factor"),
    ],
)
def test_invalid_routing_settings_are_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        RoutingConfig(**kwargs)
