"""Train the decision networks: seeded mini-batch Adam on BCE plus the load-balancing loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from medverse.core.errors import ConfigError, InputError
from medverse.decision.moe import DecisionOutput
from medverse.io.atomic import atomic_path


@dataclass(frozen=True)
class FitConfig:
    """Optimiser settings, never tuned on the test sites.

    The defaults were chosen by cross-site validation inside the training sites only
    (train Cleveland -> score Hungarian and back; grid hidden 8/16, weight decay 1e-3/0.1,
    epochs 30/100, batch 128): 30 epochs with weight decay 0.1 gave the best mean AUROC there.

    Attributes:
        epochs: Passes over the training patients.
        batch_size: Patients per step (the capacity limit applies per batch).
        lr: Adam learning rate.
        weight_decay: Decoupled weight decay (AdamW).
        aux_weight: Weight of the load-balancing loss (MoE only).
        seed: Seeds initialisation and batch order.
        feature_dropout: In training, each recorded feature of each patient is hidden (made
            missing, all its encoded columns together) with this probability, so the network
            learns to decide without it, as at a site that does not record it (0: off).
        ensemble: Networks trained with seeds ``seed, seed + 1, ...`` whose logits are
            averaged (used by the candidates; ``fit_network`` trains one).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    aux_weight: float = 0.01
    seed: int = 0
    feature_dropout: float = 0.0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.feature_dropout < 1.0:
            raise ConfigError(f"feature_dropout must be in [0, 1), got {self.feature_dropout}")
        if self.ensemble < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("ensemble, epochs and batch_size must be at least 1")


@dataclass(frozen=True)
class FitHistory:
    """Per-epoch mean losses and dropped assignments."""

    loss: list[float]
    aux_loss: list[float]
    dropped: list[int]


def fit_network(
    build: Callable[[], nn.Module],
    values: np.ndarray,
    labels: np.ndarray,
    config: FitConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    column_feature: Sequence[int] | None = None,
) -> tuple[nn.Module, FitHistory]:
    """Build a network under ``config.seed`` and train it on encoded values.

    Args:
        build: Makes the untrained network (called after seeding, so weights are repeatable).
        values: Encoded ``[patients, columns]`` (NaN = missing).
        labels: ``[patients]`` 0/1.
        config: Optimiser settings.
        on_epoch: Called with ``(epoch, mean loss)`` after each epoch (progress).
        column_feature: Per encoded column, the feature it belongs to; needed when
            ``config.feature_dropout`` is set (a feature is hidden with all its columns).

    Returns:
        The trained network (in eval mode) and its loss history.
    """
    if len(values) != len(labels) or len(values) == 0:
        raise InputError(f"{len(values)} rows of features for {len(labels)} labels")
    torch.manual_seed(config.seed)
    network = build()
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    x = torch.as_tensor(values, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    order = torch.Generator().manual_seed(config.seed)
    history = FitHistory([], [], [])
    hide = FeatureHider(config.feature_dropout, column_feature, order)
    network.train()
    for epoch in range(config.epochs):
        batches = torch.randperm(len(x), generator=order).split(config.batch_size)
        totals = _epoch(network, optimiser, x, y, batches, config.aux_weight, hide)
        history.loss.append(totals[0] / len(x))
        history.aux_loss.append(totals[1] / len(x))
        history.dropped.append(int(totals[2]))
        if on_epoch is not None:
            on_epoch(epoch, history.loss[-1])
    network.eval()
    return network, history


class FeatureHider:
    """Training-time feature dropout: hides whole features (NaN), drawn from ``generator``.

    Args:
        rate: Probability that a patient's feature is hidden (0: values pass unchanged).
        column_feature: Per encoded column, its feature (a one-hot code hides as one).
        generator: Random source (the fit's seeded generator, so runs repeat).
    """

    def __init__(
        self, rate: float, column_feature: Sequence[int] | None, generator: torch.Generator
    ) -> None:
        if rate > 0 and column_feature is None:
            raise ConfigError("feature_dropout needs the column -> feature map")
        self.rate = rate
        self.owner = torch.as_tensor(list(column_feature or []), dtype=torch.long)
        self.generator = generator

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Return ``values`` ``[patients, columns]`` with the drawn features set to NaN."""
        if self.rate <= 0:
            return values
        features = int(self.owner.max()) + 1
        draws = torch.rand((len(values), features), generator=self.generator)
        hidden = (draws < self.rate).index_select(1, self.owner)
        return values.masked_fill(hidden, float("nan"))


def _epoch(
    network: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: tuple[torch.Tensor, ...],
    aux_weight: float,
    hide: FeatureHider,
) -> np.ndarray:
    """One pass; returns summed task loss, summed aux loss and dropped assignments."""
    totals = np.zeros(3)
    for batch in batches:
        out: DecisionOutput = network(hide(x[batch]))
        task = functional.binary_cross_entropy_with_logits(out.logits, y[batch])
        loss = task + aux_weight * out.aux_loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        dropped = out.moe.dropped if out.moe is not None else 0
        totals += [task.item() * len(batch), out.aux_loss.item() * len(batch), dropped]
    return totals


def plot_history(history: FitHistory, path: Path, title: str) -> Path:
    """Write the per-epoch task loss, balance loss and dropped assignments as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.loss) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(epochs, history.loss, label="BCE (train)")
    top.plot(epochs, history.aux_loss, label="load-balancing loss")
    top.set(ylabel="loss", title=title)
    top.legend(fontsize=8)
    bottom.plot(epochs, history.dropped, color="tab:red")
    bottom.set(xlabel="epoch", ylabel="assignments dropped")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def predict_logits(network: nn.Module, values: np.ndarray) -> np.ndarray:
    """Return the network's logits for encoded values (eval mode, no capacity limit)."""
    network.eval()
    out: DecisionOutput = network(torch.as_tensor(values, dtype=torch.float32))
    return out.logits.double().numpy()
