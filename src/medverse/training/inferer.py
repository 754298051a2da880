"""Sliding-window prediction for validation and evaluation (the same maths as the Predictor).

Gaussian-weighted windows of the plan's patch size, argmax over the background and the plan's
label channels. ``training`` may not import ``inference`` (they are sibling layers), so the
few lines are mirrored here; a test checks that both give the same labels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medverse.core.volume import LabelMap, Volume
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_tensor
from medverse.training.data import image_on_plan_grid
from medverse.training.precision import Precision

SW_BATCH_SIZE = 4


def channel_values(labels: Iterable[int]) -> list[int]:
    """Channels kept for the argmax: background 0, then the label values, ascending."""
    return [0, *sorted(int(v) for v in labels if int(v) != 0)]


def window_logits(
    network: nn.Module, image: torch.Tensor, plan: Plan, precision: Precision, overlap: float
) -> torch.Tensor:
    """Return float32 logits ``[C, i, j, k]`` for one image ``[1, i, j, k]`` on the plan grid."""
    inputs = image[None].to(precision.device)
    with torch.inference_mode(), precision.autocast():
        logits = sliding_window_inference(
            inputs=inputs,
            roi_size=tuple(int(p) for p in plan.patch_size),
            sw_batch_size=SW_BATCH_SIZE,
            predictor=network,
            overlap=overlap,
            mode="gaussian",
            sw_device=precision.device,
            device=precision.device,
        )
    assert isinstance(logits, torch.Tensor)
    return logits[0].float()


def labels_from_logits(logits: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Argmax over the kept channels, mapped back to label values (int64, same device)."""
    values = channel_values(plan.labels)
    kept = logits[values] if values != list(range(logits.shape[0])) else logits
    lut = torch.as_tensor(values, device=logits.device)
    return lut[kept.argmax(dim=0)]


def predict_on_plan_grid(
    network: nn.Module, image: torch.Tensor, plan: Plan, precision: Precision, overlap: float
) -> torch.Tensor:
    """Label values ``[i, j, k]`` (int64, CPU) for an image already on the plan grid."""
    was_training = network.training
    network.eval()
    try:
        logits = window_logits(network, image, plan, precision, overlap)
    finally:
        network.train(was_training)
    return labels_from_logits(logits, plan).cpu()


def predict_volume(
    network: nn.Module, volume: Volume, plan: Plan, precision: Precision, overlap: float
) -> LabelMap:
    """Segment a native Volume: plan grid, windows, probabilities back to the native grid."""
    grid = image_on_plan_grid(volume, plan)
    image = torch.as_tensor(np.ascontiguousarray(grid.array), dtype=torch.float32)[None]
    network.eval()
    logits = window_logits(network, image, plan, precision, overlap)
    if grid.shape == volume.shape and np.allclose(grid.affine, volume.affine, atol=1e-4):
        labels = labels_from_logits(logits, plan)
    else:
        probs = torch.softmax(logits, dim=0)
        probs = resample_tensor(probs, grid.affine, volume.affine, volume.shape, order=1)
        labels = labels_from_logits(probs, plan)
    names = {int(v): str(n) for v, n in plan.labels.items() if int(v) != 0}
    array = labels.cpu().numpy().astype(np.uint8 if max(names, default=0) < 256 else np.uint16)
    return LabelMap(array=array, affine=volume.affine, meta=dict(volume.meta), labels=names)
