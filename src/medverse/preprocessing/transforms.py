"""MONAI dictionary transform chains built from a plan; arrays in (no loading), tensors out.

The chains take ``{"image": [C, i, j, k], "label": [1, i, j, k]}`` already at the plan's
spacing (see `prepare_case`), so callers pass Volumes they read themselves.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    SpatialPadd,
    Transform,
)

from medverse.core.volume import LabelMap, Volume
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_to_spacing

IMAGE = "image"
LABEL = "label"
KEYS = (IMAGE, LABEL)


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


def prepare_case(image: Volume, label: LabelMap | None, plan: Plan) -> dict[str, Any]:
    """Resample a case to the plan's spacing and add the channel axis.

    Args:
        image: The image (linear interpolation).
        label: Its label map on the same grid, or None (nearest neighbour).
        plan: The dataset plan.

    Returns:
        ``{"image": float32 [1, i, j, k], "affine": 4x4}`` plus ``"label": uint8/uint16
        [1, i, j, k]`` when a label map is given; not normalised yet.
    """
    resampled = resample_to_spacing(image, plan.target_spacing, order=1)
    sample: dict[str, Any] = {
        IMAGE: resampled.array.astype(np.float32, copy=False)[None],
        "affine": resampled.affine,
    }
    if label is not None:
        on_grid = resample_to_spacing(label, plan.target_spacing, order=0)
        sample[LABEL] = on_grid.array[None]
    return sample


def training_transforms(
    plan: Plan,
    *,
    num_samples: int = 1,
    pos: float = 1.0,
    neg: float = 1.0,
    augment: bool = True,
) -> Compose:
    """Return the training chain: normalise, pad, foreground-aware patch crop, augment.

    The output of one call is a list of ``num_samples`` dicts with ``image`` (float32
    ``[C, *patch]``) and ``label`` (float32 ``[1, *patch]``, integer values); batch them with
    ``monai.data.list_data_collate``.

    Args:
        plan: The dataset plan (patch size, normalisation).
        num_samples: Patches cropped per case.
        pos: Relative weight of patches centred on a foreground voxel.
        neg: Relative weight of patches centred on a background voxel.
        augment: Add flips, rotation/scaling and intensity changes (False: crop only).
    """
    patch = list(plan.patch_size)
    chain: list[Any] = [
        EnsureTyped(keys=KEYS, track_meta=False),
        PlanNormalized(keys=IMAGE, plan=plan),
        SpatialPadd(keys=KEYS, spatial_size=patch),
        RandCropByPosNegLabeld(
            keys=KEYS,
            label_key=LABEL,
            spatial_size=patch,
            pos=pos,
            neg=neg,
            num_samples=num_samples,
        ),
    ]
    if augment:
        chain += _spatial_augmentation(patch) + _intensity_augmentation()
    chain.append(EnsureTyped(keys=KEYS, dtype=torch.float32, track_meta=False))
    return Compose(chain)


def inference_transforms(plan: Plan) -> Compose:
    """Return the inference chain: ``{"image": [C, i, j, k]}`` -> normalised float32 tensor."""
    return Compose(
        [
            EnsureTyped(keys=IMAGE, track_meta=False),
            PlanNormalized(keys=IMAGE, plan=plan),
            EnsureTyped(keys=IMAGE, dtype=torch.float32, track_meta=False),
        ]
    )


def _spatial_augmentation(patch: list[int]) -> list[Any]:
    angle = math.pi / 6
    return [
        RandFlipd(keys=KEYS, prob=0.5, spatial_axis=0),
        RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),
        RandFlipd(keys=KEYS, prob=0.5, spatial_axis=2),
        RandAffined(
            keys=KEYS,
            prob=0.2,
            rotate_range=(angle, angle, angle),
            scale_range=(0.15, 0.15, 0.15),
            spatial_size=patch,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
            cache_grid=True,
        ),
    ]


def _intensity_augmentation() -> list[Any]:
    return [
        RandGaussianNoised(keys=IMAGE, prob=0.1, std=0.1),
        RandGaussianSmoothd(
            keys=IMAGE, prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)
        ),
        RandScaleIntensityd(keys=IMAGE, factors=0.25, prob=0.15),
        RandAdjustContrastd(keys=IMAGE, prob=0.15, gamma=(0.7, 1.5)),
    ]
