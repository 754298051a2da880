"""Convolutions on a split volume: halo exchange, then the ordinary convolution on the slab."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from medverse.parallel.spatial.errors import UnsupportedLayerError
from medverse.parallel.spatial.grid import ProcessGrid, gather_sizes
from medverse.parallel.spatial.halo import halo_exchange
from medverse.parallel.spatial.layout import (
    ConvGeometry,
    conv_need,
    conv_out_size,
    conv_transpose_need,
    conv_transpose_out_size,
    plan_axis,
    require_outputs,
    split_bounds,
)

_AXIS_NAMES = {2: "D", 3: "H", 4: "W"}


def _geometry(conv: nn.Conv3d | nn.ConvTranspose3d, name: str) -> list[ConvGeometry]:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"layer {name!r}: padding {conv.padding!r} / mode {conv.padding_mode!r} is not "
            "supported on a split volume; use integer zero padding"
        )
    out_pad = getattr(conv, "output_padding", (0, 0, 0))
    return [
        ConvGeometry(
            conv.kernel_size[j], conv.stride[j], int(conv.padding[j]), conv.dilation[j], out_pad[j]
        )
        for j in range(3)
    ]


class _SplitConv(nn.Module):
    """Shared parts: the original's parameters (same objects, same names) and its geometry."""

    def __init__(self, conv: nn.Conv3d | nn.ConvTranspose3d, grid: ProcessGrid, name: str):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.geometry = _geometry(conv, name)
        self.groups = conv.groups
        self.grid = grid
        self.name = name

    def _what(self, dim: int) -> str:
        return f"layer {self.name!r}, axis {_AXIS_NAMES[dim]}"

    def _kwargs(self, split_zero: str) -> dict[str, tuple[int, ...]]:
        split = set(self.grid.axes)
        g = self.geometry
        return {
            "stride": tuple(a.stride for a in g),
            "dilation": tuple(a.dilation for a in g),
            "padding": tuple(0 if j + 2 in split else a.padding for j, a in enumerate(g)),
            split_zero: tuple(0 if j + 2 in split else a.output_padding for j, a in enumerate(g)),
        }


class SpatialConv3d(_SplitConv):
    """`nn.Conv3d` on a split volume (any kernel, stride, padding, dilation, groups)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fetch the halos this rank's outputs read, then convolve without split-axis padding."""
        sizes = gather_sizes(x, self.grid, f"layer {self.name!r}")
        for i, dim in enumerate(self.grid.axes):
            g = self.geometry[dim - 2]
            slabs = self.grid.line_bounds(sizes, i)
            size = slabs[-1][1]
            outs = split_bounds(conv_out_size(size, g), len(slabs))
            require_outputs(outs, conv_out_size(size, g), self._what(dim))
            needs = [conv_need(o, g) for o in outs]
            plan = plan_axis(slabs, needs, size, self.grid.coords[i], self._what(dim))
            x = halo_exchange(x, plan, dim, self.grid, i, self._what(dim))
        kwargs = self._kwargs("output_padding")
        kwargs.pop("output_padding")
        return functional.conv3d(x, self.weight, self.bias, groups=self.groups, **kwargs)


class SpatialConvTranspose3d(_SplitConv):
    """`nn.ConvTranspose3d` on a split volume (up-sampling across slab borders)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fetch the inputs that reach this rank's outputs, transpose-convolve, crop to them."""
        sizes = gather_sizes(x, self.grid, f"layer {self.name!r}")
        crops: list[tuple[int, int, tuple[int, int]]] = []
        for i, dim in enumerate(self.grid.axes):
            g = self.geometry[dim - 2]
            slabs = self.grid.line_bounds(sizes, i)
            size = slabs[-1][1]
            out = split_bounds(conv_transpose_out_size(size, g), len(slabs))
            require_outputs(out, conv_transpose_out_size(size, g), self._what(dim))
            needs = [conv_transpose_need(o, g, size) for o in out]
            if any(hi <= lo for lo, hi in needs):
                raise UnsupportedLayerError(
                    f"{self._what(dim)}: some rank's outputs receive no input (stride larger "
                    "than the kernel span); not supported on a split volume"
                )
            plan = plan_axis(slabs, needs, size, self.grid.coords[i], self._what(dim))
            x = halo_exchange(x, plan, dim, self.grid, i, self._what(dim))
            # Global position of the first local output along this axis, and the wanted range.
            first = needs[self.grid.coords[i]][0] * g.stride - g.padding
            crops.append((dim, first, out[self.grid.coords[i]]))
        kwargs = self._kwargs("output_padding")
        y = functional.conv_transpose3d(x, self.weight, None, groups=self.groups, **kwargs)
        for dim, first, (start, stop) in crops:
            y = _crop_or_pad(y, dim, first - start, stop - (first + y.shape[dim]))
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1, 1)
        return y


def _crop_or_pad(y: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Pad (positive) or crop (negative) ``before``/``after`` voxels along ``dim``."""
    pad = [0] * (2 * (y.dim() - 2))
    slot = 2 * (y.dim() - 1 - dim)
    pad[slot], pad[slot + 1] = before, after
    return functional.pad(y, pad)
