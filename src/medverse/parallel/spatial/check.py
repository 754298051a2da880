"""Check, before any process starts, that a volume splits over the ranks at every layer.

The same slab arithmetic the split layers apply at run time (`layout`), on the layer input
sizes of one forward pass on the meta device (shapes only: no memory, no arithmetic).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from medverse.parallel.spatial.conv import conv_geometry
from medverse.parallel.spatial.errors import UnsupportedLayerError
from medverse.parallel.spatial.layout import (
    ConvGeometry,
    Range,
    conv_need,
    conv_out_size,
    conv_transpose_need,
    conv_transpose_out_size,
    plan_axis,
    require_outputs,
    split_bounds,
)

AXIS_NAMES = ("D", "H", "W")
"""Names of the spatial axes of an ``N, C, D, H, W`` tensor, as errors call them."""

_Conv = nn.Conv3d | nn.ConvTranspose3d


def conv_inputs(network: nn.Module, shape: Sequence[int]) -> list[tuple[str, _Conv, list[int]]]:
    """Every convolution call of ``network`` on a ``(D, H, W)`` input, with its input size.

    A shape-only copy of the network runs on the meta device; ``network`` is not touched.

    Returns:
        ``(layer name, layer, spatial input size)`` per call, in call order.
    """
    meta = copy.deepcopy(network).to("meta")
    names = {id(m): n for n, m in meta.named_modules()}
    calls: list[tuple[str, _Conv, list[int]]] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, _Conv)
        calls.append((names[id(module)], module, [int(s) for s in args[0].shape[2:]]))

    convs = [m for m in meta.modules() if isinstance(m, _Conv)]
    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            meta(torch.empty((1, convs[0].in_channels, *shape), device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _needs(layer: _Conv, g: ConvGeometry, size: int, ranks: int, what: str) -> list[Range]:
    """The input range each rank must hold for its share of ``layer``'s output."""
    if isinstance(layer, nn.ConvTranspose3d):
        out_size = conv_transpose_out_size(size, g)
        outs = split_bounds(out_size, ranks)
        require_outputs(outs, out_size, what)
        needs = [conv_transpose_need(o, g, size) for o in outs]
        if any(hi <= lo for lo, hi in needs):
            raise UnsupportedLayerError(
                f"{what}: some rank's outputs receive no input (stride larger than the kernel "
                "span); not supported on a split volume"
            )
        return needs
    out_size = conv_out_size(size, g)
    outs = split_bounds(out_size, ranks)
    require_outputs(outs, out_size, what)
    return [conv_need(o, g) for o in outs]


def check_split(network: nn.Module, shape: Sequence[int], ranks: int, axis: int) -> None:
    """Refuse a ``(D, H, W)`` input that ``ranks`` ranks cannot split along ``axis``.

    Run in the calling process, before any rank starts, it reaches the verdict every rank
    would reach at run time (the split depends only on sizes).

    Args:
        network: The network to be split (unchanged).
        shape: Spatial shape of the whole input.
        ranks: Ranks along ``axis``.
        axis: Spatial axis to split (0 = D, 1 = H, 2 = W).

    Raises:
        SlabTooThinError: Naming the first layer where some rank's slab is empty or thinner
            than the halo a neighbour needs from it.
        UnsupportedLayerError: For a layer that cannot run on a split volume.
    """
    for name, layer, size in conv_inputs(network, shape):
        what = f"layer {name!r}, axis {AXIS_NAMES[axis]}"
        g = conv_geometry(layer, name)[axis]
        needs = _needs(layer, g, size[axis], ranks, what)
        plan_axis(split_bounds(size[axis], ranks), needs, size[axis], 0, what)
