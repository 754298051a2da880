"""Network factory: build the MONAI 3D network a registry preset describes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.networks.nets import DynUNet, SegResNet, UNet

from medverse.core.errors import ConfigError
from medverse.core.registry import ModelPreset, model_preset
from medverse.preprocessing.stride import preset_stride

_NETWORKS: dict[str, Callable[..., torch.nn.Module]] = {
    "UNet": UNet,
    "SegResNet": SegResNet,
    "DynUNet": DynUNet,
}


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
    try:
        network_class = _NETWORKS[spec.network]
    except KeyError:
        known = ", ".join(sorted(_NETWORKS))
        raise ConfigError(
            f"preset {spec.name!r}: unknown network {spec.network!r}; known: {known}"
        ) from None
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
