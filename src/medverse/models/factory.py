"""Network factory: build the MONAI 3D network a registry preset describes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from medverse.core.errors import ConfigError
from medverse.core.registry import ModelPreset, model_preset
from medverse.preprocessing.stride import preset_stride

NETWORK_NAMES = ("UNet", "SegResNet", "DynUNet")
"""The MONAI network classes presets can name (imported only when one is built)."""


def _network_class(name: str) -> Callable[..., torch.nn.Module]:
    from monai.networks import nets  # imports all of MONAI (~3 s): only to build a network

    cls: Callable[..., torch.nn.Module] = getattr(nets, name)
    return cls


def resolve_preset(preset: str | ModelPreset) -> ModelPreset:
    """Return the `ModelPreset` for a name (or the preset itself).

    Raises:
        ConfigError: If the name is not registered.
    """
    return model_preset(preset) if isinstance(preset, str) else preset


def build_network(
    preset: str | ModelPreset, in_channels: int, out_channels: int
) -> torch.nn.Module:
    """Build a 3D MONAI network from a preset.

    The returned module has ``in_channels`` and ``out_channels`` attributes (set here where
    the MONAI class does not keep them), which the checkpoint writer reads.

    Args:
        preset: Preset name in ``MODEL_PRESETS`` or a `ModelPreset`.
        in_channels: Input channels (1 for one CT or MR series).
        out_channels: Output classes including background.

    Raises:
        ConfigError: For an unknown preset or network type, or arguments the class refuses.
    """
    spec = resolve_preset(preset)
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
    if spec.network not in NETWORK_NAMES:
        known = ", ".join(sorted(NETWORK_NAMES))
        raise ConfigError(f"preset {spec.name!r}: unknown network {spec.network!r}; known: {known}")
    network_class = _network_class(spec.network)
    kwargs: dict[str, Any] = dict(spec.kwargs)
    try:
        network = network_class(
            spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **kwargs
        )
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(
            f"preset {spec.name!r}: {spec.network} refused its arguments ({e})"
        ) from e
    setattr(network, "in_channels", in_channels)  # noqa: B010 (nn.Module types __setattr__)
    setattr(network, "out_channels", out_channels)  # noqa: B010
    return network


def network_stride(preset: str | ModelPreset) -> tuple[int, int, int]:
    """Return the network's total downsampling per axis (patch sizes must be multiples)."""
    return preset_stride(resolve_preset(preset))
