"""Optimiser (SGD Nesterov 0.99 like nnU-Net, or AdamW) and the per-step poly LR schedule."""

from __future__ import annotations

import torch
from torch import nn

from medverse.training.config import OptimizerName, TrainConfig

POLY_POWER = 0.9


def make_optimizer(network: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimiser named in ``config`` over the network's parameters."""
    params = network.parameters()
    if config.optimizer == OptimizerName.SGD:
        return torch.optim.SGD(
            params,
            lr=config.learning_rate,
            momentum=0.99,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly decay ``lr = lr0 * (1 - step / total_steps) ** 0.9``, stepped once per iteration."""
    return torch.optim.lr_scheduler.PolynomialLR(
        optimizer, total_iters=max(1, total_steps), power=POLY_POWER
    )
