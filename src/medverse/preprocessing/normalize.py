"""Intensity normalisation from a plan: the array op (numpy or torch) and its MONAI wrappers."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from medverse.preprocessing.plan import Normalization, Plan

EPS = 1e-8
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def normalize_intensity(array: ArrayT, plan: Plan) -> ArrayT:
    """Normalise intensities as the plan says; returns float32 of the same kind (numpy/torch).

    ``ct_window``: clip to ``[clip_low, clip_high]``, then ``(x - mean) / std`` with the
    plan's fixed dataset statistics. ``zscore``: clip if the plan has clip values, then
    subtract this array's own mean and divide by its own std. A constant array becomes zeros.

    Args:
        array: One channel of voxels, any shape (e.g. ``[i, j, k]`` or ``[1, i, j, k]``).
        plan: The dataset plan.
    """
    if isinstance(array, torch.Tensor):
        return _normalize_torch(array, plan)
    return _normalize_numpy(np.asarray(array), plan)


def _normalize_numpy(array: np.ndarray, plan: Plan) -> np.ndarray:
    x = array.astype(np.float64, copy=True)
    if plan.clip_low is not None or plan.clip_high is not None:
        x = np.clip(x, plan.clip_low, plan.clip_high)
    if plan.normalization == Normalization.CT_WINDOW:
        mean, std = float(plan.mean or 0.0), float(plan.std or 1.0)
    else:
        mean, std = float(x.mean()), float(x.std())
    return ((x - mean) / max(std, EPS)).astype(np.float32)


def _normalize_torch(tensor: torch.Tensor, plan: Plan) -> torch.Tensor:
    x = tensor.to(torch.float32)
    if plan.clip_low is not None or plan.clip_high is not None:
        x = torch.clamp(x, min=plan.clip_low, max=plan.clip_high)
    if plan.normalization == Normalization.CT_WINDOW:
        return (x - float(plan.mean or 0.0)) / max(float(plan.std or 1.0), EPS)
    as64 = x.to(torch.float64)
    mean, std = as64.mean(), as64.std(unbiased=False)
    return ((as64 - mean) / torch.clamp(std, min=EPS)).to(torch.float32)


class PlanNormalize(Transform):
    """MONAI array transform: `normalize_intensity` with a fixed plan."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def __call__(self, img: Any) -> Any:
        """Normalise one array (numpy or torch)."""
        return normalize_intensity(img, self.plan)


class PlanNormalized(MapTransform):
    """MONAI dictionary transform: applies `PlanNormalize` to each of ``keys``."""

    def __init__(self, keys: KeysCollection, plan: Plan, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = PlanNormalize(plan)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Normalise the arrays under ``keys``; other entries pass through."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


__all__ = ["PlanNormalize", "PlanNormalized", "normalize_intensity"]
