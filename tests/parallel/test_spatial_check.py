"""`check_split` reaches, in one process and before any rank starts, the ranks' verdict."""

from __future__ import annotations

import pytest
import torch

from medverse.models.factory import build_network
from medverse.parallel.spatial import SlabTooThinError
from medverse.parallel.spatial.check import check_split


def test_a_volume_too_thin_for_the_ranks_is_refused_naming_the_layer_and_axis() -> None:
    # The case test_spatial_dist runs on 2 gloo ranks: 8 voxels along D, 1 per rank at the
    # bottom of the DynUNet, where a stride-2 layer needs a halo its neighbour cannot give.
    network = build_network("dynunet", 1, 3)
    with pytest.raises(SlabTooThinError) as info:
        check_split(network, (8, 16, 16), 2, 0)
    message = str(info.value)
    assert "axis D" in message and "use fewer ranks along this axis" in message, message


def test_a_volume_that_splits_passes_and_the_network_is_untouched() -> None:
    network = build_network("unet_small", 1, 3)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    check_split(network, (64, 64, 8), 4, 0)  # 16 voxels per rank, 2 at the bottom
    check_split(network, (8, 24, 16), 2, 1)
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(network.parameters()).device.type == "cpu"
