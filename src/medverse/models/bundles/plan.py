"""The medverse Plan a MONAI bundle implies: spacing, window, patch size, labels, modality."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from medverse.core.errors import ModelError
from medverse.core.registry import Modality
from medverse.models.bundles.config import REFERENCE, BundleFiles, resolve_value
from medverse.preprocessing.fingerprint import first_error
from medverse.preprocessing.plan import Normalization, Plan

if TYPE_CHECKING:  # MONAI is imported only when a config is parsed
    from monai.bundle import ConfigParser

# Preprocessing steps that change neither intensities nor the grid the network sees.
_NEUTRAL = frozenset(
    {
        "LoadImage",
        "EnsureChannelFirst",
        "AddChannel",
        "EnsureType",
        "ToTensor",
        "ToNumpy",
        "CastToType",
        "Identity",
        "ToDevice",
        "CopyItems",
        "DeleteItems",
        "SelectItems",
        "CropForeground",  # crops only; medverse predicts the whole image
    }
)
UNBOUNDED = float(np.finfo(np.float32).max)
"""Clip bound standing for "no clipping" in a plan derived from ``clip: false``."""


def bundle_plan(
    parser: ConfigParser, metadata: Mapping[str, Any], files: BundleFiles, *, preset: str
) -> tuple[Plan, str | None]:
    """Derive a medverse Plan, and the orientation, from the bundle's preprocessing and inferer.

    Raises:
        ModelError: Naming the config or metadata file, for steps medverse cannot reproduce.
    """
    steps = preprocessing_steps(parser, files.config)
    spacing = _single(steps, "Spacing", files.config)
    if spacing is None:
        raise ModelError(
            "preprocessing has no Spacingd: medverse needs the voxel size", files.config
        )
    pixdim = _three(
        resolve_value(parser, f"{spacing}#pixdim", files.config), float, "pixdim", files.config
    )
    orientation = _orientation(parser, _single(steps, "Orientation", files.config), files.config)
    fields = _intensity_fields(parser, steps, files.config)
    try:
        plan = Plan(
            modality=_modality(metadata, files.metadata),
            target_spacing=pixdim,
            patch_size=_patch_size(parser, metadata, files),
            labels=bundle_labels(metadata, files.metadata),
            preset=preset,
            **fields,
        )
    except ValidationError as e:
        raise ModelError(
            f"cannot make a plan from the bundle ({first_error(e)})", files.config
        ) from None
    return plan, orientation


def preprocessing_steps(parser: ConfigParser, path: Path) -> list[tuple[str, str]]:
    """``(transform name without a trailing d, config id)`` of each preprocessing step."""
    ident = (
        "preprocessing#transforms"
        if isinstance(parser.get("preprocessing"), Mapping)
        else "preprocessing"
    )
    raw = parser.get(ident)
    while isinstance(raw, str) and REFERENCE.fullmatch(raw.removeprefix("$")):
        ident = raw.removeprefix("$").removeprefix("@")
        raw = parser.get(ident)
    if not isinstance(raw, list):
        raise ModelError("config has no 'preprocessing' list of transforms", path)
    steps = []
    for n, step in enumerate(raw):
        step_id = f"{ident}#{n}"
        if isinstance(step, str) and REFERENCE.fullmatch(step.removeprefix("$").removeprefix("@")):
            step_id = step.removeprefix("$").removeprefix("@")
            step = parser.get(step_id)
        target = step.get("_target_") if isinstance(step, Mapping) else None
        if not isinstance(target, str):
            raise ModelError(
                f"preprocessing step {n} is not a plain transform ({step!r:.80})", path
            )
        steps.append((target.rsplit(".", 1)[-1].removesuffix("d"), step_id))
    return steps


def window_fields(
    a_min: float, a_max: float, b_min: float | None, b_max: float | None, clip: bool
) -> dict[str, Any]:
    """Plan fields that reproduce MONAI's ``ScaleIntensityRange`` exactly (``ct_window``).

    ``(x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min`` is ``(x - mean) / std`` with
    ``std = (a_max - a_min) / (b_max - b_min)`` and ``mean = a_min - b_min * std``; clipping
    the output to ``[b_min, b_max]`` is clipping the input to ``[a_min, a_max]``.
    """
    low, high = (0.0, 1.0) if b_min is None or b_max is None else (float(b_min), float(b_max))
    if not (a_max > a_min and high > low):
        raise ValueError(
            f"needs a_max > a_min and b_max > b_min, got {a_min}, {a_max}, {low}, {high}"
        )
    std = (float(a_max) - float(a_min)) / (high - low)
    clipped = clip and b_min is not None and b_max is not None
    return {
        "normalization": Normalization.CT_WINDOW,
        "clip_low": float(a_min) if clipped else -UNBOUNDED,
        "clip_high": float(a_max) if clipped else UNBOUNDED,
        "mean": float(a_min) - low * std,
        "std": std,
    }


def bundle_labels(metadata: Mapping[str, Any], path: Path) -> dict[int, str]:
    """Label value -> name from ``network_data_format.outputs.pred`` (background dropped)."""
    pred = _dig(metadata, "network_data_format", "outputs", "pred")
    channel_def = pred.get("channel_def") if isinstance(pred, Mapping) else None
    if isinstance(channel_def, Mapping) and channel_def:
        try:
            labels = {int(k): str(v) for k, v in channel_def.items()}
        except ValueError:
            raise ModelError(
                f"channel_def keys must be channel numbers, got {list(channel_def)}", path
            ) from None
        return {v: n for v, n in sorted(labels.items()) if v != 0}
    channels = pred.get("num_channels") if isinstance(pred, Mapping) else None
    if not isinstance(channels, int) or channels < 2:
        raise ModelError(
            "metadata names no output channels (network_data_format.outputs.pred)", path
        )
    return {c: f"label_{c}" for c in range(1, channels)}


def _single(steps: list[tuple[str, str]], name: str, path: Path) -> str | None:
    found = [ident for step, ident in steps if step == name]
    if len(found) > 1:
        raise ModelError(
            f"preprocessing has {len(found)} {name}d steps; medverse handles one", path
        )
    return found[0] if found else None


def _three(value: Any, kind: type, name: str, path: Path) -> Any:
    items = list(value) if isinstance(value, list | tuple) else [value] * 3
    try:
        out = tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be three numbers, got {value!r}", path) from None
    if len(out) != 3 or min(out) <= 0:
        raise ModelError(f"{name} must be three positive numbers, got {value!r}", path)
    return out


def _orientation(parser: ConfigParser, ident: str | None, path: Path) -> str | None:
    if ident is None:
        return None
    if parser.get(f"{ident}#as_closest_canonical"):
        return "RAS"
    axcodes = resolve_value(parser, f"{ident}#axcodes", path)
    if not isinstance(axcodes, str) or len(axcodes) != 3:
        raise ModelError(f"Orientationd axcodes must be three letters, got {axcodes!r}", path)
    return axcodes.upper()


def _intensity_fields(
    parser: ConfigParser, steps: list[tuple[str, str]], path: Path
) -> dict[str, Any]:
    known = {"Spacing", "Orientation", "ScaleIntensityRange", "NormalizeIntensity"}
    for step, _ in steps:
        if step not in known and step not in _NEUTRAL:
            raise ModelError(f"preprocessing uses {step}d, which medverse cannot reproduce", path)
    window = _single(steps, "ScaleIntensityRange", path)
    zscore = _single(steps, "NormalizeIntensity", path)
    if window and zscore:
        raise ModelError("preprocessing both windows and z-scores intensities", path)
    if window:
        args = {
            k: resolve_value(parser, f"{window}#{k}", path)
            for k in ("a_min", "a_max", "b_min", "b_max", "clip")
            if parser.get(f"{window}#{k}") is not None
        }
        try:
            return window_fields(
                args["a_min"],
                args["a_max"],
                args.get("b_min"),
                args.get("b_max"),
                bool(args.get("clip", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"ScaleIntensityRanged: unsupported arguments ({e})", path) from None
    if zscore:
        if any(parser.get(f"{zscore}#{k}") for k in ("nonzero", "subtrahend", "divisor")):
            raise ModelError(
                "NormalizeIntensityd with nonzero/subtrahend/divisor is not supported", path
            )
        return {"normalization": Normalization.ZSCORE}
    return window_fields(0.0, 1.0, 0.0, 1.0, clip=False)  # no intensity step: identity


def _patch_size(parser: ConfigParser, metadata: Mapping[str, Any], files: BundleFiles) -> Any:
    if isinstance(parser.get("inferer"), Mapping) and parser.get("inferer#roi_size") is not None:
        roi = resolve_value(parser, "inferer#roi_size", files.config)
        return _three(roi, int, "inferer roi_size", files.config)
    shape = _dig(metadata, "network_data_format", "inputs", "image", "spatial_shape")
    if shape is None:
        raise ModelError(
            "no patch size: neither an inferer roi_size nor an input spatial_shape", files.config
        )
    return _three(shape, int, "spatial_shape", files.metadata)


def _modality(metadata: Mapping[str, Any], path: Path) -> Modality:
    found = _dig(metadata, "network_data_format", "inputs", "image", "modality")
    word = str(found or "").strip().upper()
    if word == "CT":
        return Modality.CT
    if word in {"MR", "MRI"} or word.startswith(("T1", "T2", "FLAIR")):
        return Modality.MR
    raise ModelError(
        f"metadata gives no CT/MR modality (network_data_format.inputs.image.modality: {found!r})",
        path,
    )


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    return doc
