"""The heart-disease task: a small torch classifier, FedProx-aware local training, evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from medverse.federated.aggregation import proximal_term
from medverse.federated.heart_data import N_INPUTS


def make_model(seed: int = 0, hidden: int = 16) -> torch.nn.Module:
    """A two-layer MLP over the encoded heart features (``hidden`` units), one logit out."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_INPUTS, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    )


def get_arrays(model: torch.nn.Module) -> list[np.ndarray]:
    """The model's parameters as numpy arrays, in state_dict order."""
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_arrays(model: torch.nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load numpy arrays (state_dict order) into the model."""
    keys = list(model.state_dict().keys())
    model.load_state_dict(
        {k: torch.as_tensor(np.asarray(a)) for k, a in zip(keys, arrays, strict=True)}
    )


@dataclass(frozen=True)
class TrainSettings:
    """Local training per round: epochs, batch size, learning rate and FedProx mu."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.01
    mu: float = 0.0


def train_local(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, settings: TrainSettings, seed: int = 0
) -> float:
    """Train in place on one site's data; return the mean training loss of the last epoch."""
    global_params = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    last = 0.0
    for _ in range(settings.epochs):
        order = torch.randperm(len(yt), generator=generator)
        losses = []
        for start in range(0, len(yt), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = loss_fn(model(xt[batch]).squeeze(1), yt[batch])
            if settings.mu > 0:
                loss = loss + proximal_term(list(model.parameters()), global_params, settings.mu)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        last = float(np.mean(losses))
    return last


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss, AUROC and accuracy on held-out data (AUROC is NaN when one class is absent)."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(x)).squeeze(1)
        loss = float(
            torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.as_tensor(y))
        )
    prob = torch.sigmoid(logits).numpy()
    auroc = float(roc_auc_score(y, prob)) if len(np.unique(y)) == 2 else float("nan")
    return {"loss": loss, "auroc": auroc, "accuracy": float(((prob > 0.5) == (y > 0.5)).mean())}
