"""The one image contract: a voxel array with its affine (voxel index -> RAS mm) and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Volume:
    """A 3D image on a known grid.

    The array is indexed ``[i, j, k]`` (nibabel/MONAI order): for DICOM, ``i`` runs along a row
    (columns), ``j`` down the columns (rows) and ``k`` across slices. ``affine`` maps the voxel
    index ``(i, j, k, 1)`` to RAS+ millimetres. Every reader returns one; every writer takes one.

    Attributes:
        array: 3D voxel data.
        affine: 4x4 float64 matrix, voxel index -> RAS mm.
        meta: Free-form metadata (modality, series UID, source files, ...); never patient names.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D array, got shape {self.array.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume needs a 4x4 affine, got shape {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid size ``(i, j, k)``."""
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``i``, ``j`` and ``k``."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """Return a Volume on the same grid with new voxels (and optionally extra metadata)."""
        return replace(self, array=array, meta={**self.meta, **meta})

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` to RAS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


@dataclass(frozen=True)
class LabelMap(Volume):
    """An integer label Volume with the names of its labels.

    Attributes:
        labels: Label value -> structure name, background (0) excluded.
    """

    labels: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not np.issubdtype(self.array.dtype, np.integer):
            raise ValueError(f"LabelMap needs an integer array, got {self.array.dtype}")

    @classmethod
    def from_volume(cls, volume: Volume, labels: Mapping[int, str]) -> LabelMap:
        """Wrap an integer Volume with label names."""
        return cls(array=volume.array, affine=volume.affine, meta=volume.meta, labels=labels)

    def present_labels(self) -> list[int]:
        """Label values (non-zero) that occur in the array, ascending."""
        values = np.unique(self.array)
        return [int(v) for v in values if v != 0]
