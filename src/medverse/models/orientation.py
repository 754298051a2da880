"""Exact reorientation (flips and axis permutations) of a volume and back, via nibabel."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import nibabel as nib
import numpy as np

from medverse.core.errors import ModelError
from medverse.core.volume import LabelMap, Volume

V = TypeVar("V", bound=Volume)


def to_orientation(volume: V, axcodes: str) -> V:
    """Permute and flip the array so its axes point along ``axcodes`` (e.g. ``"RAS"``).

    Exact (no interpolation), as MONAI's ``Orientation``; the affine follows the array.
    """
    start = nib.orientations.io_orientation(volume.affine)
    transform = nib.orientations.ornt_transform(
        start, nib.orientations.axcodes2ornt(tuple(axcodes))
    )
    array = nib.orientations.apply_orientation(np.asarray(volume.array), transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.shape)
    if not (array.flags.c_contiguous or array.flags.f_contiguous):  # flips: one copy
        array = np.ascontiguousarray(array)
    # a permutation of a contiguous array is contiguous in the other order: no copy (a
    # 512x512x300 CT costs 1.5 s per copy, and readers take either order)
    return dataclasses.replace(volume, array=array, affine=affine)


def back_to_grid(labels: LabelMap, like: Volume) -> LabelMap:
    """Labels predicted on a reoriented ``like``, put back onto ``like``'s own grid (exact).

    Raises:
        ModelError: If the labels do not map back onto that grid.
    """
    back = to_orientation(labels, "".join(nib.aff2axcodes(like.affine)))
    if back.shape != like.shape or not np.allclose(back.affine, like.affine, atol=1e-4):
        raise ModelError("labels do not map back onto the input grid")
    return dataclasses.replace(back, affine=like.affine, meta=dict(like.meta))
