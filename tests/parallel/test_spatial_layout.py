"""Slab arithmetic of spatial parallelism, checked against torch's own convolution sizes."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from medverse.parallel.spatial.errors import SlabTooThinError
from medverse.parallel.spatial.layout import (
    ConvGeometry,
    conv_need,
    conv_out_size,
    conv_transpose_need,
    conv_transpose_out_size,
    plan_axis,
    split_bounds,
)


def test_split_bounds_cover_the_axis_once_with_uneven_sizes() -> None:
    bounds = split_bounds(37, 4)
    assert bounds[0][0] == 0 and bounds[-1][1] == 37
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert sorted({b - a for a, b in bounds}) == [9, 10]


@pytest.mark.parametrize(
    ("k", "s", "p", "d"), [(3, 1, 1, 1), (3, 2, 1, 1), (5, 2, 4, 2), (2, 2, 0, 1)]
)
def test_conv_sizes_and_needs_match_torch(k: int, s: int, p: int, d: int) -> None:
    g = ConvGeometry(k, s, p, d)
    conv = nn.Conv3d(1, 1, (k, 1, 1), stride=(s, 1, 1), padding=(p, 0, 0), dilation=(d, 1, 1))
    x = torch.zeros(1, 1, 23, 1, 1)
    out = conv_out_size(23, g)
    assert conv(x).shape[2] == out
    # Output j reads exactly the inputs conv_need names: perturb one input, see who changes.
    lo, hi = conv_need((4, 5), g)
    with torch.no_grad():
        for i in range(23):
            y = x.clone()
            y[0, 0, i] = 1.0
            changed = bool((conv(y) - conv(x))[0, 0, 4].abs().max() > 0)
            if changed:
                assert lo <= i < hi


def test_conv_transpose_needs_cover_every_contribution() -> None:
    g = ConvGeometry(3, 2, 1, 1, output_padding=1)
    up = nn.ConvTranspose3d(1, 1, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0),
                            output_padding=(1, 0, 0), bias=False)  # fmt: skip
    assert up(torch.zeros(1, 1, 9, 1, 1)).shape[2] == conv_transpose_out_size(9, g) == 18
    lo, hi = conv_transpose_need((6, 11), g, 9)
    with torch.no_grad():
        for i in range(9):
            x = torch.zeros(1, 1, 9, 1, 1)
            x[0, 0, i] = 1.0
            if up(x)[0, 0, 6:11].abs().max() > 0:
                assert lo <= i < hi


def test_plan_sends_exactly_what_the_neighbour_receives() -> None:
    g = ConvGeometry(3, 2, 1, 1)
    slabs = split_bounds(35, 3)
    outs = split_bounds(conv_out_size(35, g), 3)
    needs = [conv_need(o, g) for o in outs]
    plans = [plan_axis(slabs, needs, 35, r, "test") for r in range(3)]
    for r in range(2):
        sent = plans[r].send_right
        assert sent[1] - sent[0] == plans[r + 1].recv_left
        sent = plans[r + 1].send_left
        assert sent[1] - sent[0] == plans[r].recv_right
    assert plans[0].pad_low == 1 and plans[0].recv_left == 0


def test_a_slab_thinner_than_the_halo_is_refused_with_the_sizes() -> None:
    g = ConvGeometry(7, 1, 3, 1)
    slabs = split_bounds(8, 4)  # 2 voxels each; a 7-wide kernel reads 3 on each side
    needs = [conv_need(o, g) for o in slabs]
    with pytest.raises(
        SlabTooThinError, match=r"rank 1's slab is 2 voxel\(s\) thick but rank 0 needs a 3-voxel"
    ):
        plan_axis(slabs, needs, 8, 0, "layer 'conv', axis D")
