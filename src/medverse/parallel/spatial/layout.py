"""Slab arithmetic: who owns which voxels, which input a layer needs, what moves where.

Every tensor of a spatially parallel network is split the same way along each split axis:
rank ``r`` of ``P`` owns ``[r * n // P, (r + 1) * n // P)`` of an axis of global size ``n``.
The split depends only on the size, so two tensors of equal size (a skip connection and the
up-sampled tensor it is concatenated with) are always split alike, whatever the network.
Pure integer arithmetic here, no torch.distributed, so every rank computes every rank's plan
and all ranks reach the same verdict (no rank waits on a peer that raised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medverse.parallel.spatial.errors import SlabTooThinError

Range = tuple[int, int]


@dataclass(frozen=True)
class ConvGeometry:
    """One axis of a convolution: kernel, stride, padding, dilation (and output padding)."""

    kernel: int
    stride: int
    padding: int
    dilation: int
    output_padding: int = 0

    @property
    def span(self) -> int:
        """Distance from the first to the last kernel tap, plus one."""
        return self.dilation * (self.kernel - 1) + 1


def split_bounds(size: int, parts: int) -> list[Range]:
    """Return the ``[start, stop)`` range each of ``parts`` ranks owns of an axis of ``size``."""
    return [(r * size // parts, (r + 1) * size // parts) for r in range(parts)]


def bounds_from_sizes(sizes: Sequence[int]) -> list[Range]:
    """Return consecutive ``[start, stop)`` ranges for slabs of the given sizes."""
    out, start = [], 0
    for n in sizes:
        out.append((start, start + n))
        start += n
    return out


def conv_out_size(size: int, g: ConvGeometry) -> int:
    """Output length of a convolution along one axis (as ``torch.nn.Conv3d`` computes it)."""
    return (size + 2 * g.padding - g.span) // g.stride + 1


def conv_transpose_out_size(size: int, g: ConvGeometry) -> int:
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * g.stride - 2 * g.padding + g.span + g.output_padding


def conv_need(out: Range, g: ConvGeometry) -> Range:
    """Global input range (may reach past the borders: zero padding) for outputs ``out``."""
    start, stop = out
    return start * g.stride - g.padding, (stop - 1) * g.stride - g.padding + g.span


def conv_transpose_need(out: Range, g: ConvGeometry, size: int) -> Range:
    """Global input range (inside ``[0, size)``) that contributes to outputs ``out``."""
    start, stop = out
    low = -((g.padding + g.span - 1 - start) // g.stride)  # ceil((start + p - span + 1) / s)
    high = (stop - 1 + g.padding) // g.stride + 1
    return max(low, 0), min(high, size)


@dataclass(frozen=True)
class AxisPlan:
    """One rank's halo exchange along one axis (local coordinates index its own slab).

    The assembled tensor is ``[pad_low zeros | from left | own[own] | from right | pad_high
    zeros]`` and covers the needed global range exactly.
    """

    pad_low: int
    recv_left: int
    own: Range
    recv_right: int
    pad_high: int
    send_left: Range
    send_right: Range
    has_left: bool
    has_right: bool


def require_outputs(outs: Sequence[Range], size: int, what: str) -> None:
    """Refuse a layer whose output leaves some rank without voxels.

    Raises:
        SlabTooThinError: Naming the layer, the output size and the number of ranks.
    """
    if any(stop <= start for start, stop in outs):
        raise SlabTooThinError(
            f"{what}: the output is {size} voxel(s) long, too short to give each of "
            f"{len(outs)} ranks a slab; use fewer ranks along this axis or a larger volume"
        )


def _left_part(need: Range, slab: Range) -> Range:
    return max(need[0], 0), min(slab[0], need[1])


def _right_part(need: Range, slab: Range, size: int) -> Range:
    return max(need[0], slab[1]), min(need[1], size)


def _check(slabs: Sequence[Range], needs: Sequence[Range], size: int, what: str) -> None:
    for r, (slab, need) in enumerate(zip(slabs, needs, strict=True)):
        if slab[1] <= slab[0]:
            raise SlabTooThinError(
                f"{what}: rank {r} of {len(slabs)} along this axis gets an empty slab of an "
                f"axis of {size} voxels; use fewer ranks along it or a larger volume"
            )
        left, right = _left_part(need, slab), _right_part(need, slab, size)
        if left[1] > left[0] and (r == 0 or left[0] < slabs[r - 1][0]):
            _thin(slabs, r - 1, r, slab[0] - left[0], what)
        if right[1] > right[0] and (r == len(slabs) - 1 or right[1] > slabs[r + 1][1]):
            _thin(slabs, r + 1, r, right[1] - slab[1], what)


def _thin(slabs: Sequence[Range], owner: int, reader: int, halo: int, what: str) -> None:
    thick = slabs[owner][1] - slabs[owner][0] if 0 <= owner < len(slabs) else 0
    raise SlabTooThinError(
        f"{what}: rank {owner}'s slab is {thick} voxel(s) thick but rank {reader} needs a "
        f"{halo}-voxel halo from it; use fewer ranks along this axis or a larger volume"
    )


def plan_axis(
    slabs: Sequence[Range], needs: Sequence[Range], size: int, rank: int, what: str
) -> AxisPlan:
    """Plan ``rank``'s exchange on a line of ranks, after checking every rank's needs.

    Args:
        slabs: Global range each rank of the line owns, in line order.
        needs: Global range each rank must hold to compute its output.
        size: Global length of the axis.
        rank: Position of this process on the line.
        what: The layer and axis, for error messages.

    Raises:
        SlabTooThinError: If any slab is empty or thinner than a halo read from it.
    """
    _check(slabs, needs, size, what)
    slab, need = slabs[rank], needs[rank]
    left, right = _left_part(need, slab), _right_part(need, slab, size)
    own = (max(need[0], slab[0]) - slab[0], min(need[1], slab[1]) - slab[0])
    send_left = send_right = (0, 0)
    if rank > 0:
        peer = _right_part(needs[rank - 1], slabs[rank - 1], size)
        send_left = (peer[0] - slab[0], peer[1] - slab[0])
    if rank < len(slabs) - 1:
        peer = _left_part(needs[rank + 1], slabs[rank + 1])
        send_right = (peer[0] - slab[0], peer[1] - slab[0])
    return AxisPlan(
        pad_low=max(0, min(need[1], 0) - need[0]),
        recv_left=max(0, left[1] - left[0]),
        own=(own[0], max(own[0], own[1])),
        recv_right=max(0, right[1] - right[0]),
        pad_high=max(0, need[1] - max(need[0], size)),
        send_left=(send_left[0], max(send_left[0], send_left[1])),
        send_right=(send_right[0], max(send_right[0], send_right[1])),
        has_left=rank > 0,
        has_right=rank < len(slabs) - 1,
    )
