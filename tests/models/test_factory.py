"""Every registered preset builds, and its stated stride is the one the network needs."""

from __future__ import annotations

import pytest
import torch

from medverse.core.errors import ConfigError
from medverse.core.registry import MODEL_PRESETS, ModelPreset
from medverse.models.factory import build_network, network_stride
from medverse.models.losses import make_loss


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_preset_builds_and_keeps_patch_shape(preset: str) -> None:
    network = build_network(preset, in_channels=1, out_channels=3).eval()
    assert (network.in_channels, network.out_channels) == (1, 3)
    stride = network_stride(preset)
    shape = (stride[0], 2 * stride[1], stride[2])
    with torch.no_grad():
        out = network(torch.zeros(1, 1, *shape))
    assert out.shape == (1, 3, *shape)


@pytest.mark.parametrize("preset", ["unet_small", "dynunet"])
def test_patch_not_a_multiple_of_the_stride_fails(preset: str) -> None:
    network = build_network(preset, 1, 2).eval()
    stride = network_stride(preset)
    with torch.no_grad(), pytest.raises(RuntimeError):
        network(torch.zeros(1, 1, stride[0] + stride[0] // 2, stride[1], stride[2]))


def test_strides_of_the_registry_presets() -> None:
    assert network_stride("dynunet") == (8, 8, 8)
    assert network_stride("unet_small") == (8, 8, 8)
    assert network_stride("unet_brief") == (16, 16, 16)
    assert network_stride("segresnet") == (8, 8, 8)
    custom = ModelPreset("flat", "DynUNet", {"strides": ((1, 1, 1), (2, 2, 1), (2, 2, 2))})
    assert network_stride(custom) == (4, 4, 2)


def test_unknown_presets_and_networks_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model preset"):
        build_network("nope", 1, 2)
    with pytest.raises(ConfigError, match="unknown network"):
        build_network(ModelPreset("x", "ViT", {}), 1, 2)
    with pytest.raises(ConfigError, match="refused"):
        build_network(ModelPreset("x", "UNet", {"channels": (8,)}), 1, 2)


def test_loss_prefers_the_right_answer() -> None:
    loss = make_loss()
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:6, 2:6, 2:6] = 1
    right = torch.cat([1 - target, target], dim=1) * 20 - 10
    wrong = -right
    assert loss(right, target).item() < 0.1 < loss(wrong, target).item()
