"""Measure a label map (volumes, bounding boxes, centroids in RAS mm) into a JSON report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import write_text_atomic

REPORT_VERSION = 1

# Metadata keys copied into the report: technical, never names, IDs, dates or file paths.


class StructureMeasurement(BaseModel):
    """Measurements of one structure present in the label map.

    Attributes:
        value: Label value in the array.
        name: Structure name.
        voxel_count: Number of voxels with this value.
        volume_ml: ``voxel_count`` times the voxel volume, in millilitres.
        bbox_min_mm: Smallest RAS coordinate of any of its voxel centres, per axis.
        bbox_max_mm: Largest RAS coordinate of any of its voxel centres, per axis.
        centroid_mm: Mean RAS position of its voxel centres.
    """

    value: int
    name: str
    voxel_count: int
    volume_ml: float
    bbox_min_mm: tuple[float, float, float]
    bbox_max_mm: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]


class Report(BaseModel):
    """What a segmentation found, measured on the label map's own grid.

    Attributes:
        version: Report format version.
        shape: Voxel grid size of the label map.
        spacing_mm: Voxel size along each array axis.
        voxel_volume_ml: Volume of one voxel in millilitres.
        study: Non-identifying study metadata (modality, series UID, ...).
        structures: One entry per structure present, by ascending label value.
        absent: Names of the labels the model knows that were not found.
        model: How the labels were made (checkpoint file name, preset, device, options);
            empty for labels that did not come from a model.
    """

    version: int = REPORT_VERSION
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    voxel_volume_ml: float
    study: dict[str, str] = Field(default_factory=dict)
    structures: list[StructureMeasurement] = Field(default_factory=list)
    absent: list[str] = Field(default_factory=list)
    model: dict[str, str] = Field(default_factory=dict)

    def structure(self, name: str) -> StructureMeasurement | None:
        """Return the measurement of the structure called ``name``, if present."""
        return next((s for s in self.structures if s.name == name), None)


def measure(labels: LabelMap, *, source: Volume | None = None) -> Report:
    """Measure every structure present in ``labels``.

    Args:
        labels: The label map; its affine turns voxel indices into RAS millimetres.
        source: The image the labels belong to; its DICOM source (else the labels') gives
            the report's study fields.

    Returns:
        The report; volumes are exactly ``voxel_count * labels.voxel_volume_ml``.
    """
    array = np.asarray(labels.array)
    present = labels.present_labels()
    structures = [_measure_one(labels, array, value) for value in present]
    absent = [name for value, name in sorted(labels.labels.items()) if value not in present]
    return Report(
        shape=labels.shape,
        spacing_mm=labels.spacing,
        voxel_volume_ml=labels.voxel_volume_ml,
        study=study_metadata(source or labels),
        structures=structures,
        absent=absent,
    )


def study_metadata(volume: Volume) -> dict[str, str]:
    """Return the non-identifying study fields of a Volume's DICOM source (none for NIfTI)."""
    if volume.dicom is None:
        return {}
    fields = {
        "modality": volume.dicom.modality,
        "series_uid": volume.dicom.series_instance_uid,
        "description": volume.dicom.series_description,
    }
    return {key: value for key, value in fields.items() if value}


def write_report(report: Report, path: str | Path) -> Path:
    """Write ``report`` as indented JSON, atomically, and return the path."""
    return write_text_atomic(path, report.model_dump_json(indent=2) + "\n")


def read_report(path: str | Path) -> Report:
    """Read a report written by :func:`write_report`."""
    return Report.model_validate_json(Path(path).read_text(encoding="utf-8"))


def _measure_one(labels: LabelMap, array: np.ndarray, value: int) -> StructureMeasurement:
    ijk = np.nonzero(array == value)
    count = int(ijk[0].size)
    lows, highs, means = [], [], []
    for axis in range(3):  # one RAS axis at a time keeps memory at one column of coordinates
        row = labels.affine[axis]
        world = row[0] * ijk[0] + row[1] * ijk[1] + row[2] * ijk[2] + row[3]
        lows.append(float(world.min()))
        highs.append(float(world.max()))
        means.append(float(world.mean()))
    return StructureMeasurement(
        value=value,
        name=str(labels.labels.get(value, f"label_{value}")),
        voxel_count=count,
        volume_ml=count * labels.voxel_volume_ml,
        bbox_min_mm=(lows[0], lows[1], lows[2]),
        bbox_max_mm=(highs[0], highs[1], highs[2]),
        centroid_mm=(means[0], means[1], means[2]),
    )
