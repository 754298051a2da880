"""The hippocampus task: the small UNet, local training on a site's patches, validation Dice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medverse.federated.aggregation import proximal_term
from medverse.federated.hippo_data import FOREGROUND, PRESET
from medverse.models.factory import build_network
from medverse.models.losses import make_loss
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.transforms import training_transforms
from medverse.training.data import PatchDataset, ValidationCase, split_chain
from medverse.training.inferer import predict_on_plan_grid
from medverse.training.metrics import case_scores, mean_dice, score_totals, totals_to_means
from medverse.training.precision import inference_precision


def make_network(plan: Plan, seed: int = 0) -> torch.nn.Module:
    """The task's network (``unet_small``), seeded so every site starts from the same weights."""
    torch.manual_seed(seed)
    return build_network(PRESET, 1, plan.num_classes)


def flat_parameters(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    """All floating-point entries of a state dict as one float64 vector (state order)."""
    return np.concatenate([v.detach().cpu().numpy().ravel() for v in state.values()]).astype(
        np.float64
    )


def unflatten(flat: np.ndarray, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict shaped like ``like`` from a flat vector (inverse of ``flat_parameters``)."""
    out, start = {}, 0
    for key, value in like.items():
        n = value.numel()
        chunk = flat[start : start + n].reshape(tuple(value.shape))
        out[key] = torch.as_tensor(chunk, dtype=value.dtype)
        start += n
    return out


@dataclass(frozen=True)
class LocalSteps:
    """Local training per round: optimiser steps, batch size, AdamW rate, FedProx mu."""

    steps: int = 10
    batch_size: int = 2
    lr: float = 2e-3
    mu: float = 0.0


class PatchSource:
    """A site's random training patches (the training chain's crop and augmentation).

    Sample ``n`` is a pure function of ``(seed, n)``, as in ``medverse train``.
    """

    def __init__(self, cached: Sequence[Mapping[str, torch.Tensor]], plan: Plan, seed: int):
        chain = training_transforms(plan, pos=FOREGROUND, neg=1.0 - FOREGROUND)
        self.dataset = PatchDataset(cached, split_chain(chain)[1], seed)

    def batch(self, first: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``first .. first + size - 1`` stacked: (images, labels)."""
        items = [self.dataset[first + i] for i in range(size)]
        return torch.stack([s["image"] for s in items]), torch.stack([s["label"] for s in items])


def make_optimiser(network: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """The task's optimiser (AdamW, weight decay 3e-5), for a site or the pooled baseline."""
    return torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=3e-5)


def train_local(
    network: torch.nn.Module,
    source: PatchSource,
    settings: LocalSteps,
    first_sample: int,
    optimiser: torch.optim.Optimizer | None = None,
) -> float:
    """Train in place for ``settings.steps`` steps; return the mean loss.

    ``optimiser`` (over ``network``'s parameters) carries its moments over from earlier calls;
    without it a fresh AdamW starts.
    """
    start = [p.detach().clone() for p in network.parameters()]
    optimiser = optimiser or make_optimiser(network, settings.lr)
    loss_fn = make_loss()
    network.train()
    losses = []
    for step in range(settings.steps):
        x, y = source.batch(first_sample + step * settings.batch_size, settings.batch_size)
        loss = loss_fn(network(x), y)
        if settings.mu > 0:
            loss = loss + proximal_term(list(network.parameters()), start, settings.mu)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def validation_dice(
    network: torch.nn.Module, cases: Sequence[ValidationCase], plan: Plan
) -> dict[str, float]:
    """Mean Dice over the validation cases (as ``medverse train`` validates), and per label."""
    labels = sorted(int(v) for v in plan.labels)
    precision = inference_precision(torch.device("cpu"))
    scores = []
    for case in cases:
        pred = predict_on_plan_grid(network, case.image, plan, precision, 0.5)
        scores.append(case_scores(pred, case.label, labels, case.spacing, distances=False))
    means = totals_to_means(score_totals(scores, labels), labels)
    out = {"dice": mean_dice(means)}
    for value in labels:
        out[f"dice_{plan.labels[value].lower()}"] = float(means[value]["dice_mean"] or 0.0)
    return out
