"""Total downsampling of a model preset, computed from registry data alone (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medverse.core.errors import ConfigError
from medverse.core.registry import ModelPreset, model_preset

Stride3 = tuple[int, int, int]


def preset_stride(preset: str | ModelPreset) -> Stride3:
    """Return the total downsampling factor per axis of a preset's network.

    Patch sizes must be multiples of it so that every encoder level divides evenly.

    Args:
        preset: A preset name from the registry, or a `ModelPreset`.

    Raises:
        ConfigError: If the preset or its network type is unknown.
    """
    spec = model_preset(preset) if isinstance(preset, str) else preset
    kwargs = dict(spec.kwargs)
    if spec.network in ("UNet", "DynUNet"):
        return _product_of_strides(kwargs.get("strides", ()))
    if spec.network == "SegResNet":
        levels = len(kwargs.get("blocks_down", (1, 2, 2, 4)))
        factor = 2 ** max(levels - 1, 0)
        return (factor, factor, factor)
    raise ConfigError(f"preset {spec.name!r}: unknown network type {spec.network!r}")


def _product_of_strides(strides: Sequence[Any]) -> Stride3:
    total = [1, 1, 1]
    for step in strides:
        per_axis = [int(step)] * 3 if isinstance(step, int) else [int(s) for s in step]
        if len(per_axis) != 3:
            raise ConfigError(f"stride {step!r} is not 3D")
        total = [t * s for t, s in zip(total, per_axis)]
    return (total[0], total[1], total[2])
