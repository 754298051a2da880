"""The plan: spacing, patch size and normalisation derived from a fingerprint, saved as JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medverse.core.errors import ConfigError, InputError
from medverse.core.registry import MODEL_PRESETS, Modality
from medverse.io.atomic import write_text_atomic
from medverse.preprocessing.fingerprint import (
    Fingerprint,
    IntensityStats,
    fingerprint_msd_dataset,
    first_error,
)
from medverse.preprocessing.stride import preset_stride

PLAN_FORMAT_VERSION = 1
ANISOTROPY_THRESHOLD = 3.0
DEFAULT_MAX_PATCH_VOXELS = 128**3
OVERRIDABLE = (
    "target_spacing",
    "patch_size",
    "normalization",
    "clip_low",
    "clip_high",
    "mean",
    "std",
    "max_patch_voxels",
)

Spacing3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]


class Normalization(StrEnum):
    """How intensities are normalised before the network sees them."""

    CT_WINDOW = "ct_window"
    ZSCORE = "zscore"


class Plan(BaseModel):
    """Every preprocessing decision for one dataset and network, saved as ``plan.json``.

    Attributes:
        format_version: Version of this schema.
        modality: ``CT`` or ``MR``.
        target_spacing: Voxel size to resample to, mm, ``[i, j, k]``.
        patch_size: Training/inference window, voxels, a multiple of the network stride.
        normalization: ``ct_window`` (clip, then fixed mean/std) or ``zscore`` (per volume).
        clip_low: Lower clip before normalising (None: no clipping).
        clip_high: Upper clip before normalising (None: no clipping).
        mean: Fixed mean for ``ct_window`` (None for ``zscore``).
        std: Fixed standard deviation for ``ct_window`` (None for ``zscore``).
        labels: Label value -> name, background (0) excluded.
        preset: Model preset name (medverse.core.registry.MODEL_PRESETS).
        overrides: The decisions a user forced, as given (recorded, never silent).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = PLAN_FORMAT_VERSION
    modality: Modality
    target_spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    normalization: Normalization
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    labels: dict[int, str]
    preset: str
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if self.format_version != PLAN_FORMAT_VERSION:
            raise ValueError(f"plan format_version {self.format_version} is not supported")
        if min(self.target_spacing) <= 0 or min(self.patch_size) <= 0:
            raise ValueError("target_spacing and patch_size must be positive")
        if self.normalization == Normalization.CT_WINDOW and None in (
            self.clip_low,
            self.clip_high,
            self.mean,
            self.std,
        ):
            raise ValueError("ct_window needs clip_low, clip_high, mean and std")
        if None not in (self.clip_low, self.clip_high) and self.clip_low > self.clip_high:  # type: ignore[operator]
            raise ValueError("clip_low must not exceed clip_high")
        if self.std is not None and self.std <= 0:
            raise ValueError("std must be positive")
        if self.preset in MODEL_PRESETS:
            try:
                check_patch_size(self.patch_size, preset_stride(self.preset))
            except ConfigError as e:
                raise ValueError(e.problem) from None
        return self

    @property
    def num_classes(self) -> int:
        """Network output channels: background plus the highest label value."""
        return max(self.labels, default=0) + 1

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON, atomically, and return the path."""
        return write_text_atomic(path, self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by `save`.

        Raises:
            InputError: If the file does not exist.
            ConfigError: If it is not a valid plan (the message names the field).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError("plan file not found", path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as e:
            raise ConfigError(f"not a valid plan ({first_error(e)})", path) from None


@dataclass(frozen=True)
class NormalizationChoice:
    """The normalisation fields of a plan."""

    normalization: Normalization
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None


def choose_target_spacing(
    spacings: Sequence[Sequence[float]], *, anisotropy_threshold: float = ANISOTROPY_THRESHOLD
) -> Spacing3:
    """Pick the spacing to resample to: the per-axis median (nnU-Net's rule).

    For anisotropic data (the coarsest median axis more than ``anisotropy_threshold`` times
    the finest other one) that axis takes the 10th percentile of its spacings instead, so
    fewer cases are upsampled across slices; it never goes below the other axes' spacing.

    Args:
        spacings: Per-case voxel sizes in mm, ``[i, j, k]``.
        anisotropy_threshold: Ratio above which the data counts as anisotropic.
    """
    table = np.asarray(spacings, dtype=np.float64).reshape(-1, 3)
    target = np.median(table, axis=0)
    worst = int(np.argmax(target))
    others = [target[a] for a in range(3) if a != worst]
    if target[worst] > anisotropy_threshold * max(others):
        target[worst] = max(float(np.percentile(table[:, worst], 10)), max(others))
    return (float(target[0]), float(target[1]), float(target[2]))


def median_shape_at_spacing(
    shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]], target: Sequence[float]
) -> Spacing3:
    """Per-axis median of the case shapes once resampled to ``target`` spacing (voxels)."""
    size_mm = np.asarray(shapes, dtype=np.float64) * np.asarray(spacings, dtype=np.float64)
    median = np.median(size_mm / np.asarray(target, dtype=np.float64), axis=0)
    return (float(median[0]), float(median[1]), float(median[2]))


def choose_patch_size(
    median_shape: Sequence[float],
    stride: Sequence[int],
    *,
    max_voxels: int = DEFAULT_MAX_PATCH_VOXELS,
) -> Shape3:
    """Pick the patch: the median shape rounded up to the stride, shrunk to the voxel budget.

    While the patch holds more than ``max_voxels`` voxels its largest axis loses one stride
    step (never below one step), so typical cases fit whole when the budget allows.

    Args:
        median_shape: Median case shape at the target spacing, voxels.
        stride: The network's total downsampling per axis.
        max_voxels: Largest number of voxels in a patch.
    """
    steps = [max(1, math.ceil(m / s - 1e-6)) for m, s in zip(median_shape, stride)]
    patch = [n * s for n, s in zip(steps, stride)]
    while math.prod(patch) > max_voxels:
        shrinkable = [a for a in range(3) if patch[a] > stride[a]]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: patch[a])
        patch[axis] -= stride[axis]
    return (patch[0], patch[1], patch[2])


def choose_normalization(
    modality: Modality | str, foreground: IntensityStats, method: Normalization | None = None
) -> NormalizationChoice:
    """Pick the normalisation: CT clips to foreground 0.5/99.5 percentiles, then z-scores.

    CT uses the dataset's foreground mean and std (``ct_window``): Hounsfield units mean the
    same in every scan. MR intensities are arbitrary, so each volume is z-scored on its own.

    Args:
        modality: ``CT`` or ``MR``.
        foreground: The fingerprint's foreground intensity statistics.
        method: Force a method instead of the modality's default.
    """
    if method is None:
        method = (
            Normalization.CT_WINDOW if Modality(modality) == Modality.CT else Normalization.ZSCORE
        )
    if Normalization(method) == Normalization.ZSCORE:
        return NormalizationChoice(Normalization.ZSCORE)
    return NormalizationChoice(
        Normalization.CT_WINDOW,
        clip_low=foreground.percentile_00_5,
        clip_high=foreground.percentile_99_5,
        mean=foreground.mean,
        std=max(foreground.std, 1e-8),
    )


def check_patch_size(patch_size: Sequence[int], stride: Sequence[int]) -> None:
    """Raise ConfigError unless every patch axis is a positive multiple of the stride."""
    if any(p <= 0 or p % s for p, s in zip(patch_size, stride)):
        raise ConfigError(
            f"patch size {tuple(patch_size)} must be a multiple of the network stride "
            f"{tuple(stride)} on every axis"
        )


def make_plan(
    fingerprint: Fingerprint, preset: str = "dynunet", overrides: Mapping[str, Any] | None = None
) -> Plan:
    """Derive the plan from a fingerprint; each decision can be overridden explicitly.

    Args:
        fingerprint: The dataset's fingerprint.
        preset: Model preset name (decides the stride the patch size must divide by).
        overrides: Forced decisions, keys from ``OVERRIDABLE``; they are recorded in the plan.

    Raises:
        ConfigError: For an unknown preset or override key, or an invalid overridden value.
    """
    given = dict(overrides or {})
    unknown = sorted(set(given) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"unknown plan override(s) {unknown}; known: {', '.join(OVERRIDABLE)}")
    stride = preset_stride(preset)
    spacing = given.get("target_spacing") or choose_target_spacing(fingerprint.spacings)
    spacing = _three(spacing, float, "target_spacing")
    patch = _decide_patch_size(fingerprint, spacing, stride, given)
    try:
        method = Normalization(given["normalization"]) if "normalization" in given else None
    except ValueError:
        known = ", ".join(m.value for m in Normalization)
        raise ConfigError(f"normalization must be one of {known}") from None
    norm = choose_normalization(fingerprint.modality, fingerprint.foreground, method)
    fields = {k: getattr(norm, k) for k in ("clip_low", "clip_high", "mean", "std")}
    fields.update({k: given[k] for k in fields if k in given})
    try:
        return Plan(
            modality=fingerprint.modality,
            target_spacing=spacing,
            patch_size=patch,
            normalization=norm.normalization,
            labels=dict(fingerprint.labels),
            preset=preset,
            overrides=_jsonable(given),
            **fields,
        )
    except ValidationError as e:
        raise ConfigError(f"invalid plan ({first_error(e)})") from None


@dataclass(frozen=True)
class PlanResult:
    """What `plan_dataset` measured, decided and wrote."""

    fingerprint: Fingerprint
    plan: Plan
    fingerprint_path: Path
    plan_path: Path


def plan_dataset(
    dataset_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    preset: str = "dynunet",
    overrides: Mapping[str, Any] | None = None,
    max_cases: int | None = None,
) -> PlanResult:
    """Fingerprint an MSD dataset, plan it, and write ``fingerprint.json`` and ``plan.json``.

    Args:
        dataset_dir: The MSD folder (``dataset.json``, ``imagesTr``, ``labelsTr``).
        out_dir: Where to write the two files (default: the dataset folder).
        preset: Model preset name.
        overrides: Forced decisions (see `make_plan`).
        max_cases: Fingerprint only the first ``max_cases`` cases (all when None).

    Raises:
        InputError: For a bad dataset (naming the case) or an output folder that cannot be
            written.
        ConfigError: For an unknown preset or a bad override.
    """
    fingerprint = fingerprint_msd_dataset(dataset_dir, max_cases=max_cases)
    plan = make_plan(fingerprint, preset=preset, overrides=overrides)
    folder = Path(out_dir) if out_dir is not None else Path(dataset_dir)
    try:
        fingerprint_path = fingerprint.save(folder / "fingerprint.json")
        plan_path = plan.save(folder / "plan.json")
    except OSError as e:
        raise InputError(f"cannot write the plan here ({e.strerror or e})", folder) from None
    return PlanResult(fingerprint, plan, fingerprint_path, plan_path)


def _decide_patch_size(
    fingerprint: Fingerprint, spacing: Spacing3, stride: Shape3, given: Mapping[str, Any]
) -> Shape3:
    if "patch_size" in given:
        patch: Shape3 = _three(given["patch_size"], int, "patch_size")
        check_patch_size(patch, stride)
        return patch
    try:
        budget = int(given.get("max_patch_voxels", DEFAULT_MAX_PATCH_VOXELS))
    except (TypeError, ValueError):
        raise ConfigError("max_patch_voxels must be a whole number") from None
    median = median_shape_at_spacing(fingerprint.shapes, fingerprint.spacings, spacing)
    return choose_patch_size(median, stride, max_voxels=budget)


def _three(value: Any, kind: type, name: str) -> Any:
    try:
        items = [kind(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be three numbers, got {value!r}") from None
    if len(items) != 3:
        raise ConfigError(f"{name} must be three numbers, got {value!r}")
    return tuple(items)


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in values.items()}
