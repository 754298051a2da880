"""Convolutions on a split volume: halo exchange, then the ordinary convolution on the slab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from medverse.parallel.spatial.errors import UnsupportedLayerError
from medverse.parallel.spatial.grid import ProcessGrid, gather_sizes
from medverse.parallel.spatial.halo import AxisHalo, assemble, fetch, give_back
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


def conv_geometry(conv: nn.Conv3d | nn.ConvTranspose3d, name: str) -> list[ConvGeometry]:
    """Per-axis geometry of ``conv`` (named ``name`` in errors).

    Raises:
        UnsupportedLayerError: For string or non-zero padding modes.
    """
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


@dataclass(frozen=True)
class ConvCall:
    """The non-tensor arguments of ``aten.convolution`` (split axes already unpadded)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int


class _HaloConv(torch.autograd.Function):
    """Fetch halos, convolve the assembled slab, keep only the slab and its halos.

    Backward re-assembles the input from the saved halos (no communication), computes the
    convolution's gradients and sends each halo's input gradient back to its owner. The
    assembled input is not saved: it would double the memory of every convolution input.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        halos: list[AxisHalo],
        call: ConvCall,
        grid: ProcessGrid,
    ) -> torch.Tensor:
        received: list[torch.Tensor] = []
        full = x
        for halo in halos:
            from_left, from_right = fetch(full, halo, grid)
            received += [from_left, from_right]
            full = assemble(full, halo, from_left, from_right)
        y = torch.ops.aten.convolution(
            full, weight, bias, call.stride, call.padding, call.dilation,
            call.transposed, call.output_padding, call.groups,
        )  # fmt: skip
        ctx.save_for_backward(x, weight, *received)
        ctx.halos, ctx.call, ctx.grid, ctx.has_bias = halos, call, grid, bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, *received = ctx.saved_tensors
        call: ConvCall = ctx.call
        shapes, full = [], x
        for k, halo in enumerate(ctx.halos):
            shapes.append(full.shape)
            full = assemble(full, halo, received[2 * k], received[2 * k + 1])
        # Under autocast the forward ran in the lower precision: differentiate in it too.
        full, weight = full.to(grad.dtype), weight.to(grad.dtype)
        out_channels = weight.shape[1] * call.groups if call.transposed else weight.shape[0]
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias]
        g_in, g_weight, g_bias = torch.ops.aten.convolution_backward(
            grad, full, weight, [out_channels] if ctx.has_bias else None, call.stride,
            call.padding, call.dilation, call.transposed, call.output_padding, call.groups, mask,
        )  # fmt: skip
        del full
        if g_in is not None:
            for halo, shape in reversed(list(zip(ctx.halos, shapes, strict=True))):
                g_in = give_back(g_in, halo, ctx.grid, shape)
        return g_in, g_weight, g_bias if ctx.has_bias else None, None, None, None


class _SplitConv(nn.Module):
    """Shared parts: the original's parameters (same objects, same names) and its geometry."""

    def __init__(self, conv: nn.Conv3d | nn.ConvTranspose3d, grid: ProcessGrid, name: str):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.geometry = conv_geometry(conv, name)
        self.groups = conv.groups
        self.grid = grid
        self.name = name

    def _what(self, dim: int) -> str:
        return f"layer {self.name!r}, axis {_AXIS_NAMES[dim]}"

    def _call(self, transposed: bool) -> ConvCall:
        split = set(self.grid.axes)
        g = self.geometry
        return ConvCall(
            stride=tuple(a.stride for a in g),
            padding=tuple(0 if j + 2 in split else a.padding for j, a in enumerate(g)),
            dilation=tuple(a.dilation for a in g),
            transposed=transposed,
            output_padding=tuple(
                0 if j + 2 in split or not transposed else a.output_padding for j, a in enumerate(g)
            ),
            groups=self.groups,
        )


class SpatialConv3d(_SplitConv):
    """`nn.Conv3d` on a split volume (any kernel, stride, padding, dilation, groups)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fetch the halos this rank's outputs read, then convolve without split-axis padding."""
        sizes = gather_sizes(x, self.grid, f"layer {self.name!r}")
        halos = []
        for i, dim in enumerate(self.grid.axes):
            g = self.geometry[dim - 2]
            slabs = self.grid.line_bounds(sizes, i)
            size = slabs[-1][1]
            outs = split_bounds(conv_out_size(size, g), len(slabs))
            require_outputs(outs, conv_out_size(size, g), self._what(dim))
            needs = [conv_need(o, g) for o in outs]
            plan = plan_axis(slabs, needs, size, self.grid.coords[i], self._what(dim))
            halos.append(AxisHalo(plan, dim, i, self._what(dim)))
        y: torch.Tensor = _HaloConv.apply(
            x, self.weight, self.bias, halos, self._call(False), self.grid
        )
        return y


class SpatialConvTranspose3d(_SplitConv):
    """`nn.ConvTranspose3d` on a split volume (up-sampling across slab borders)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fetch the inputs that reach this rank's outputs, transpose-convolve, crop to them."""
        sizes = gather_sizes(x, self.grid, f"layer {self.name!r}")
        crops: list[tuple[int, int, tuple[int, int]]] = []
        halos = []
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
            halos.append(AxisHalo(plan, dim, i, self._what(dim)))
            # Global position of the first local output along this axis, and the wanted range.
            first = needs[self.grid.coords[i]][0] * g.stride - g.padding
            crops.append((dim, first, out[self.grid.coords[i]]))
        y: torch.Tensor = _HaloConv.apply(x, self.weight, None, halos, self._call(True), self.grid)
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
