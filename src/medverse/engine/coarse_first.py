"""Coarse first: run a covering subset of each z-band's windows, then only those near structures.

At overlap 0.5 a subset of the windows already covers the image (every other start along x
and y, plus the last): 9 of 25 per band on a 273 x 273 grid. Those run first; each of the
band's other windows then runs only if, somewhere in its box, the blended logits of the
first pass do not say background with at least `COARSE_MARGIN` to spare. A skipped window's
voxels keep the first pass's blend, which is background there. What this saves depends on
the overlap (none at 0.25, where no subset covers) and on how much of the band is away from
any structure: on the TotalSegmentator example CT (a tight abdominal field of view, every
96^3 box near an organ) it skips none. tests/engine/test_coarse_first.py runs any skipped
window anyway on the real CT and checks that it would have been background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

COARSE_MARGIN = 3.0
"""Logits by which background must beat every structure, in all of a window's box, to skip it."""


def covering_starts(starts: Sequence[int], roi: int, size: int) -> set[int]:
    """The fewest of ``starts`` (greedy, left to right) whose windows cover ``[min, size)``."""
    ordered = sorted(set(starts))
    chosen = [ordered[0]]
    while chosen[-1] + roi < size and chosen[-1] != ordered[-1]:
        reach = chosen[-1] + roi
        nxt = max((s for s in ordered if chosen[-1] < s <= reach), default=None)
        if nxt is None:  # a gap: the next start after it
            nxt = min(s for s in ordered if s > chosen[-1])
        chosen.append(nxt)
    return set(chosen)


def first_pass(
    starts: Sequence[tuple[int, int, int]], keep: Sequence[bool], roi: Sequence[int],
    padded: Sequence[int],
) -> list[bool]:  # fmt: skip
    """Which kept windows belong to the first pass (a covering subset of x and y starts)."""
    kept = [s for s, k in zip(starts, keep) if k]
    if not kept:
        return [False] * len(starts)
    xs = covering_starts([s[0] for s in kept], int(roi[0]), int(padded[0]))
    ys = covering_starts([s[1] for s in kept], int(roi[1]), int(padded[1]))
    return [bool(k and s[0] in xs and s[1] in ys) for s, k in zip(starts, keep)]


def background_margin(sums: torch.Tensor, weights: torch.Tensor, depth: int) -> torch.Tensor:
    """Per ``(x, y)`` column of the band: the largest (structure - background) blended logit.

    ``sums`` are weighted logit sums ``(C, X, Y, Z)`` and ``weights`` their weight sums; only
    the first ``depth`` slices (the band) count. Voxels no window has reached yet are +inf
    (unknown: the window over them must run).
    """
    weight = weights[..., :depth].float()
    structure = sums[1:, ..., :depth].float().amax(dim=0)
    difference = (structure - sums[0, ..., :depth].float()) / weight.clamp_min(1e-12)
    difference = torch.where(weight > 0, difference, torch.full_like(difference, torch.inf))
    return difference.amax(dim=-1)


def windows_to_skip(
    margin: torch.Tensor, corners: Sequence[tuple[int, int]], roi: Sequence[int]
) -> list[bool]:
    """Per window corner ``(x, y)``: True if background wins by `COARSE_MARGIN` in all its box."""
    rx, ry = int(roi[0]), int(roi[1])
    return [bool(margin[x : x + rx, y : y + ry].amax() < -COARSE_MARGIN) for x, y in corners]
