"""The one image contract: a voxel array with its affine (voxel index -> RAS mm) and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DicomSource:
    """The DICOM series a Volume was read from: what a DICOM SEG needs to reference it.

    Attributes:
        series_instance_uid: SeriesInstanceUID as the files give it ("" when they leave it
            empty; the scan then selects the series by its ``2.25.`` stand-in key).
        study_instance_uid: StudyInstanceUID as the files give it ("" when empty).
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        sop_class_uid: SOP Class UID of the images.
        sop_instance_uids: The SOP Instance UID of slice k, in k order.
        files: The file holding slice k, in k order (a multi-frame file repeats).
        modality: Modality, e.g. "CT" or "MR".
        series_description: SeriesDescription.
    """

    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    files: tuple[Path, ...]
    modality: str = ""
    series_description: str = ""

    def __post_init__(self) -> None:
        if len(self.files) != len(self.sop_instance_uids):
            raise ValueError(
                f"DicomSource needs one file per SOP instance, got {len(self.files)} files "
                f"for {len(self.sop_instance_uids)} instances"
            )


@dataclass(frozen=True)
class Volume:
    """A 3D image on a known grid.

    The array is indexed ``[i, j, k]`` (nibabel/MONAI order): for DICOM, ``i`` runs along a row
    (columns), ``j`` down the columns (rows) and ``k`` across slices. ``affine`` maps the voxel
    index ``(i, j, k, 1)`` to RAS+ millimetres. Every reader returns one; every writer takes one.

    Attributes:
        array: 3D voxel data.
        affine: 4x4 float64 matrix, voxel index -> RAS mm.
        meta: Free-form metadata (e.g. ``source``, the path it was read from); never patient
            names. DICOM identity is not here but in ``dicom``.
        dicom: The DICOM series it was read from (None for NIfTI and computed volumes).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    dicom: DicomSource | None = field(default=None, kw_only=True)

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
    def modality(self) -> str:
        """The DICOM modality ("CT", "MR", ...), or "" when the source does not say."""
        return self.dicom.modality if self.dicom is not None else ""

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
        return cls(
            array=volume.array,
            affine=volume.affine,
            meta=volume.meta,
            dicom=volume.dicom,
            labels=labels,
        )

    def present_labels(self) -> list[int]:
        """Label values (non-zero) that occur in the array, ascending."""
        values = np.unique(self.array)
        return [int(v) for v in values if v != 0]
