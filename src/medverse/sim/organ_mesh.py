"""``medverse sim mesh``: a segmentation result folder's structure -> tet mesh, report, picture."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medverse.core.errors import InputError
from medverse.core.registry import label_map
from medverse.core.volume import LabelMap
from medverse.inference.report import read_report
from medverse.io.nifti import read_nifti_labels
from medverse.sim.materials import Material, material_for, tissue_for_structure
from medverse.sim.mesher import (
    MeshOptions,
    MeshQuality,
    mesh_quality,
    structure_surface,
    tetrahedralize,
)
from medverse.sim.picture import render_mesh_picture
from medverse.sim.tetmesh import write_tetmesh

LABELS_NAME = "labels.nii.gz"
REPORT_NAME = "report.json"
TETMESH_NAME = "tetmesh.vtu"
QUALITY_NAME = "quality.json"
PICTURE_NAME = "mesh.png"
# Without a report the names come from the registry's TotalSegmentator map.
DEFAULT_LABEL_MAP = "totalseg_total"


@dataclass(frozen=True)
class OrganMesh:
    """What ``mesh_structure`` wrote.

    Attributes:
        tetmesh: VTK unstructured grid, RAS millimetres.
        quality: JSON with the quality report and the material.
        picture: PNG of the surface and the dihedral-angle histogram.
        report: The quality figures.
    """

    tetmesh: Path
    quality: Path
    picture: Path
    report: MeshQuality


def read_result_labels(result_dir: Path) -> tuple[LabelMap, list[str]]:
    """Read a segmentation result's ``labels.nii.gz`` with names from its report (or registry).

    Returns:
        The label map, and the names the report lists as absent (known to the model, no voxels).

    Raises:
        InputError: If the folder or its label map is missing or unreadable.
    """
    labels_path = result_dir / LABELS_NAME
    if not labels_path.is_file():
        raise InputError(
            f"no {LABELS_NAME} here; give a `medverse segment` output folder", result_dir
        )
    report_path = result_dir / REPORT_NAME
    absent: list[str] = []
    if report_path.is_file():
        report = read_report(report_path)
        names = {s.value: s.name for s in report.structures}
        absent = list(report.absent)
    else:
        names = {v: info.name for v, info in label_map(DEFAULT_LABEL_MAP).items()}
    return read_nifti_labels(labels_path, names), absent


def _value_of(labels: LabelMap, structure: str, absent: list[str], path: Path) -> int:
    if structure in absent:
        raise InputError(
            f"structure {structure!r} is empty: the segmentation found no voxels", path
        )
    for value, name in labels.labels.items():
        if name == structure:
            return int(value)
    present = sorted(labels.labels[v] for v in labels.present_labels() if v in labels.labels)
    raise InputError(f"no structure {structure!r}; present: {', '.join(present) or 'none'}", path)


def mesh_structure(
    result_dir: str | Path,
    structure: str,
    out_dir: str | Path,
    *,
    options: MeshOptions | None = None,
    material: Material | None = None,
) -> OrganMesh:
    """Mesh one segmented structure into tetrahedra with a quality report and a picture.

    Everything is written into a hidden folder inside ``out_dir`` and moved in only when all
    files are complete, so a failure (bad structure, mesher timeout) leaves nothing behind.

    Args:
        result_dir: Folder written by ``medverse segment`` (labels.nii.gz, report.json).
        structure: Structure name, e.g. ``liver`` or ``spleen``.
        out_dir: Output folder (created if needed).
        options: Mesh size, envelope and time limit.
        material: Material to record; default from the tissue table for this structure.

    Returns:
        The written paths and the quality figures.

    Raises:
        InputError: Missing folder/labels, unknown or empty structure, non-manifold surface.
        MeshingError: The mesher failed or ran past its time limit.
        ConfigError: No tissue is known for the structure and no material was given.
    """
    result_dir, out_dir = Path(result_dir), Path(out_dir)
    options = options or MeshOptions()
    labels, absent = read_result_labels(result_dir)
    value = _value_of(labels, structure, absent, result_dir / LABELS_NAME)
    material = material or material_for(tissue_for_structure(structure))
    surface = structure_surface(labels, value, options.decimate)
    tets = tetrahedralize(
        np.asarray(surface.vertices), np.asarray(surface.faces), options, structure
    )
    label_mm3 = float(surface.metadata["label_volume_mm3"])
    quality = mesh_quality(tets, label_mm3)
    document = {
        "structure": structure,
        "label": value,
        "units": "mm (RAS patient space)",
        "quality": asdict(quality),
        "material": asdict(material),
        "options": asdict(options),
    }
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sim-mesh-", dir=out_dir))
    try:
        write_tetmesh(tets, staging / TETMESH_NAME)
        (staging / QUALITY_NAME).write_text(json.dumps(document, indent=2) + "\n")
        render_mesh_picture(tets, quality, structure, staging / PICTURE_NAME)
        for name in (TETMESH_NAME, QUALITY_NAME, PICTURE_NAME):
            os.replace(staging / name, out_dir / name)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OrganMesh(
        out_dir / TETMESH_NAME, out_dir / QUALITY_NAME, out_dir / PICTURE_NAME, quality
    )
