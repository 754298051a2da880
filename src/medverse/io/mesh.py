"""Per-label surface meshes: marching cubes in patient space, Taubin smoothing, volume kept."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes
from tqdm import tqdm

from medverse.core.errors import InputError
from medverse.core.logging import get_logger
from medverse.core.volume import LabelMap
from medverse.io.mesh_export import read_glb, write_glb, write_stl

__all__ = ["label_meshes", "read_glb", "write_glb", "write_stl"]

_LOG = get_logger(__name__)

# Taubin low-pass filter (lambda, mu): pass-band k = 1/lambda - 1/mu ~ 0.077, no net shrinkage.
_TAUBIN_LAMBDA = 0.5
_TAUBIN_MU = 0.52
# The volume-restoring normal offset never exceeds this fraction of the smallest voxel side.
_MAX_OFFSET_VOXELS = 0.25
# Quadric decimation aggressions tried in turn, fastest first (see ``_decimate``).
_DECIMATE_AGGRESSIONS = (7, 5, 4, 3)


def label_meshes(
    labels: LabelMap,
    *,
    smooth_iterations: int = 10,
    decimate: float | None = None,
    labels_subset: Iterable[int] | None = None,
    preserve_volume: bool = True,
    progress: bool = False,
) -> dict[int, trimesh.Trimesh]:
    """Mesh every label of a label map as a closed, outward-facing surface in RAS mm.

    Each label is cropped to its bounding box, padded with a zero border (so organs cut by the
    edge of the volume are capped and closed) and run through marching cubes at level 0.5.
    Vertices go through the Volume affine into patient space (RAS+ millimetres), and faces are
    wound so normals point outwards (positive signed volume) whatever the sign of the affine
    determinant. Taubin smoothing then removes the voxel staircase without shrinking, optional
    quadric decimation reduces the face count, and finally (``preserve_volume``) every vertex is
    moved along its normal by one common offset, at most a quarter of the smallest voxel side,
    so the mesh encloses the label's volume (voxel count x voxel volume).

    Args:
        labels: The label map; ``labels.labels`` names the structures.
        smooth_iterations: Taubin passes (each pass alternates shrink and inflate); 0 for none.
        decimate: Fraction of faces to keep, in (0, 1]; ``None`` keeps all. A decimated mesh
            is kept closed (it may then keep a few more faces on thin parts).
        labels_subset: Label values to mesh; default all. Values with no voxels are skipped.
        preserve_volume: Restore the label volume after smoothing and decimation.
        progress: Show a progress bar on stderr.

    Returns:
        Label value -> mesh (vertices in RAS mm), ascending by value, only labels with voxels.
        Each mesh's ``metadata`` holds ``label``, ``name``, ``label_volume_mm3`` and
        ``volume_offset_mm`` (the normal offset applied).

    Raises:
        InputError: If ``smooth_iterations`` is negative, ``decimate`` is outside (0, 1], or
            decimation is asked for without the ``mesh`` extra (fast-simplification).
    """
    _check_options(smooth_iterations, decimate)
    array = np.asarray(labels.array)
    boxes = ndimage.find_objects(array)
    present = [v + 1 for v, box in enumerate(boxes) if box is not None]
    wanted = present if labels_subset is None else sorted(set(labels_subset) & set(present))
    voxel_mm3 = float(abs(np.linalg.det(labels.affine[:3, :3])))
    max_offset = _MAX_OFFSET_VOXELS * min(labels.spacing)
    meshes: dict[int, trimesh.Trimesh] = {}
    for value in tqdm(wanted, desc="meshing labels", disable=not progress, unit="label"):
        box = boxes[value - 1]
        assert box is not None  # only present labels are wanted
        mask = array[box] == value
        mesh = _mesh_mask(mask, np.array([s.start for s in box]), labels.affine)
        if smooth_iterations:
            trimesh.smoothing.filter_taubin(
                mesh, lamb=_TAUBIN_LAMBDA, nu=_TAUBIN_MU, iterations=smooth_iterations
            )
        if decimate is not None and decimate < 1.0:
            mesh = _decimate(mesh, decimate, value)
        target = float(mask.sum()) * voxel_mm3
        offset = _match_volume(mesh, target, max_offset, value) if preserve_volume else 0.0
        name = labels.labels.get(value, f"label_{value}")
        mesh.metadata.update(
            label=value, name=name, label_volume_mm3=target, volume_offset_mm=offset
        )
        meshes[value] = mesh
    return meshes


def _check_options(smooth_iterations: int, decimate: float | None) -> None:
    if smooth_iterations < 0:
        raise InputError(f"smooth_iterations must be >= 0, got {smooth_iterations}")
    if decimate is not None and not 0.0 < decimate <= 1.0:
        raise InputError(f"decimate is the fraction of faces to keep, in (0, 1]; got {decimate}")
    if decimate is not None and importlib.util.find_spec("fast_simplification") is None:
        raise InputError("decimation needs fast-simplification: pip install 'medverse[mesh]'")


def _mesh_mask(mask: np.ndarray, origin: np.ndarray, affine: np.ndarray) -> trimesh.Trimesh:
    """Marching cubes of a cropped binary mask whose first voxel is ``origin`` in the volume."""
    padded = np.pad(mask, 1).astype(np.uint8)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, method="lewiner", allow_degenerate=False)
    ijk = verts + (origin - 1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    # skimage winds faces inward in index space; a mirroring affine (det < 0) turns them out.
    if np.linalg.det(affine[:3, :3]) > 0:
        faces = faces[:, ::-1]
    return trimesh.Trimesh(vertices=world, faces=np.ascontiguousarray(faces), process=False)


def _decimate(mesh: trimesh.Trimesh, keep: float, value: int) -> trimesh.Trimesh:
    """Quadric decimation to ``keep`` of the faces, backing off until the result stays closed.

    fast-simplification's default aggression (7) can pinch thin parts into edges shared by four
    faces (10 of the 31 sample CT labels at 25 %); gentler settings keep them manifold at a
    slightly higher face count. If none does, the full mesh is kept, with a warning.
    """
    from fast_simplification import simplify

    target = max(4, round(len(mesh.faces) * keep))
    for aggression in _DECIMATE_AGGRESSIONS:
        points, faces = mesh.vertices, mesh.faces
        for _ in range(3):  # gentle settings stop early; a further pass gets closer
            points, faces = simplify(points, faces, target_count=target, agg=aggression)
            if len(faces) <= 1.02 * target:
                break
        simple = trimesh.Trimesh(vertices=points, faces=faces, process=False)
        if simple.is_watertight and simple.volume > 0:
            return simple
    _LOG.warning("label %d: no decimation kept the mesh closed, keeping the full mesh", value)
    return mesh


def _match_volume(mesh: trimesh.Trimesh, target_mm3: float, max_offset: float, value: int) -> float:
    """Offset all vertices along their normals so the mesh volume equals ``target_mm3``.

    The first-order step is ``(target - volume) / area``; three steps converge to well under
    0.01 %. The total offset is clipped to ``max_offset`` mm so it can never hide a bad mesh.

    Returns:
        The total offset applied, in mm (positive = outwards).
    """
    total = 0.0
    for _ in range(3):
        error = target_mm3 - float(mesh.volume)
        if abs(error) <= 1e-6 * target_mm3 or mesh.area <= 0:
            break
        step = float(np.clip(error / mesh.area, -max_offset - total, max_offset - total))
        if step == 0.0:
            break
        mesh.vertices = mesh.vertices + step * mesh.vertex_normals
        total += step
    if abs(total) >= max_offset * (1 - 1e-9):
        _LOG.warning(
            "label %d: volume offset capped at %.3f mm; mesh volume %.1f mm3 vs label %.1f mm3",
            value,
            total,
            float(mesh.volume),
            target_mm3,
        )
    return total
