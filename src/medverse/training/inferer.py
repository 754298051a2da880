"""Sliding-window prediction for validation and evaluation: the shared window engine.

Validation and evaluation run the very code the Predictor runs
(`medverse.engine.sliding`), with the training precision (AMP on CUDA, float32 on the CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from medverse.core.volume import LabelMap, Volume
from medverse.engine.backends import TorchBackend
from medverse.engine.sliding import WindowOptions, predict_grid_labels, predict_labels
from medverse.parallel.spatial import SpatialParallel
from medverse.preprocessing.plan import Plan
from medverse.training.precision import Precision

SW_BATCH_SIZE = 4


def predict_on_plan_grid(
    network: nn.Module, image: torch.Tensor, plan: Plan, precision: Precision, overlap: float
) -> torch.Tensor:
    """Label values ``[i, j, k]`` (int64, CPU) for an image ``[1, i, j, k]`` on the plan grid."""
    with _evaluating(network):
        backend = TorchBackend(
            network, precision.device, dtype=precision.dtype, cpu_workers=_workers(network)
        )
        options = WindowOptions(overlap=overlap, batch_size=SW_BATCH_SIZE)
        labels = predict_grid_labels(image.to(precision.device), plan, backend, options)
    return labels.cpu()


def predict_volume(
    network: nn.Module,
    volume: Volume,
    plan: Plan,
    precision: Precision,
    overlap: float,
    *,
    mirror: bool = False,
) -> LabelMap:
    """Segment a native Volume: plan grid, windows, probabilities back to the native grid.

    ``mirror`` averages over the 8 axis mirrorings of each window (8x the compute).
    """
    with _evaluating(network):
        backend = TorchBackend(
            network, precision.device, dtype=precision.dtype, cpu_workers=_workers(network)
        )
        options = WindowOptions(overlap=overlap, batch_size=SW_BATCH_SIZE, mirror=mirror)
        return predict_labels(volume, plan, backend, options, precision.device)


def _workers(network: nn.Module) -> int | None:
    """One window thread for a spatially split network: its ranks must call it in lockstep."""
    return 1 if isinstance(network, SpatialParallel) else None


@contextmanager
def _evaluating(network: nn.Module) -> Iterator[None]:
    """Eval mode for the prediction, then the mode the network was in."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)
