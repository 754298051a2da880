"""Meshes of the real TotalSegmentator CT labels: closed, outward, on the surface, right size."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from medverse.core.errors import InputError
from medverse.core.registry import label_color, label_map
from medverse.core.volume import LabelMap
from medverse.io.mesh import label_meshes, read_glb, write_glb, write_stl
from medverse.io.nifti import read_nifti_labels
from tests.conftest import CT_LABELS

# Rule for the *unsmoothed, uncorrected* marching-cubes volume check: binary marching cubes cuts
# voxel corners, which costs a few % only on labels under ~1000 voxels (rib_left_12 with 123
# voxels loses 7.9 %, rib_right_12 with 288 loses 5.4 %). Default meshes are checked on all.
RAW_MC_MIN_VOXELS = 1000


@pytest.fixture(scope="module")
def ct_labels() -> LabelMap:
    names = {v: info.name for v, info in label_map("totalseg_total").items()}
    return read_nifti_labels(CT_LABELS, names)


@pytest.fixture(scope="module")
def timed_meshes(ct_labels: LabelMap) -> tuple[dict[int, trimesh.Trimesh], float]:
    start = time.perf_counter()
    meshes = label_meshes(ct_labels)
    return meshes, time.perf_counter() - start


@pytest.fixture(scope="module")
def meshes(timed_meshes: tuple[dict[int, trimesh.Trimesh], float]) -> dict[int, trimesh.Trimesh]:
    return timed_meshes[0]


def label_volume_mm3(labels: LabelMap, value: int) -> float:
    return float((labels.array == value).sum()) * labels.voxel_volume_ml * 1000.0


def boundary_face_centres(labels: LabelMap, value: int) -> np.ndarray:
    """World positions (mm) of the centres of all voxel faces between the label and the rest."""
    inside = np.pad(labels.array == value, 1).astype(np.int8)
    centres = []
    for axis in range(3):
        ijk = np.argwhere(np.diff(inside, axis=axis) != 0).astype(np.float64)
        ijk[:, axis] += 0.5
        centres.append(ijk - 1.0)
    return labels.index_to_world(np.concatenate(centres))


def test_one_mesh_per_present_label_quickly(
    ct_labels: LabelMap, timed_meshes: tuple[dict[int, trimesh.Trimesh], float]
) -> None:
    meshes, seconds = timed_meshes
    assert list(meshes) == ct_labels.present_labels()
    assert len(meshes) == 31
    assert meshes[5].metadata["name"] == "liver"
    assert seconds < 20.0, f"meshing 512x512x20 with 31 labels took {seconds:.1f} s"


def test_every_mesh_is_closed_and_faces_outward(ct_labels: LabelMap, meshes: dict) -> None:
    edge_labels = set(np.unique(ct_labels.array[:, :, [0, -1]])) - {0}
    assert {5, 1} <= edge_labels, "liver and spleen are cut by the volume edge in this sample"
    for value, mesh in meshes.items():
        name = ct_labels.labels[value]
        assert mesh.is_watertight, name
        assert mesh.is_winding_consistent, name
        assert mesh.volume > 0, name


def test_vertices_lie_within_one_voxel_of_the_label_surface(
    ct_labels: LabelMap, meshes: dict
) -> None:
    voxel_diagonal = float(np.linalg.norm(ct_labels.spacing))
    for value, mesh in meshes.items():
        distance, _ = cKDTree(boundary_face_centres(ct_labels, value)).query(mesh.vertices)
        assert distance.max() < voxel_diagonal, ct_labels.labels[value]
    # and in patient space: the liver lies on the patient's right (RAS +x), the spleen on the left
    assert meshes[5].centroid[0] > 0 > meshes[1].centroid[0]


def test_mesh_volume_matches_label_volume_for_every_label(
    ct_labels: LabelMap, meshes: dict
) -> None:
    for value, mesh in meshes.items():
        expected = label_volume_mm3(ct_labels, value)
        assert mesh.volume == pytest.approx(expected, rel=0.05), ct_labels.labels[value]
        # the volume-restoring offset is a small fraction of a voxel, not a rescue
        assert abs(mesh.metadata["volume_offset_mm"]) < 0.1, ct_labels.labels[value]


def test_raw_marching_cubes_volume_is_close_before_any_correction(ct_labels: LabelMap) -> None:
    raw = label_meshes(ct_labels, smooth_iterations=0, preserve_volume=False)
    checked = 0
    for value, mesh in raw.items():
        voxels = int((ct_labels.array == value).sum())
        assert mesh.metadata["volume_offset_mm"] == 0.0
        assert mesh.is_watertight and mesh.volume > 0
        if voxels >= RAW_MC_MIN_VOXELS:
            checked += 1
            expected = label_volume_mm3(ct_labels, value)
            assert mesh.volume == pytest.approx(expected, rel=0.05), ct_labels.labels[value]
    assert checked == 27


@pytest.mark.parametrize("flip_axis", [None, 0, 2])
def test_outward_normals_whatever_the_affine_handedness(
    ct_labels: LabelMap, flip_axis: int | None
) -> None:
    affine = ct_labels.affine.copy()
    if flip_axis is not None:
        affine[:3, flip_axis] *= -1  # mirror one voxel axis: the determinant changes sign
    flipped = LabelMap(array=ct_labels.array, affine=affine, labels=ct_labels.labels)
    meshes = label_meshes(flipped, labels_subset=[7, 97])  # pancreas, a rib
    assert np.sign(np.linalg.det(affine[:3, :3])) == (-1 if flip_axis is None else 1)
    for value, mesh in meshes.items():
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume == pytest.approx(label_volume_mm3(flipped, value), rel=0.05)
        # outward: stepping against the normal lands in the label far more often than along it
        # (reversed normals would swap the two fractions)
        behind = _inside(flipped, value, mesh.vertices - 0.3 * mesh.vertex_normals).mean()
        ahead = _inside(flipped, value, mesh.vertices + 0.3 * mesh.vertex_normals).mean()
        assert behind - ahead > 0.5, (behind, ahead)


def _inside(labels: LabelMap, value: int, points: np.ndarray) -> np.ndarray:
    ijk = (points - labels.affine[:3, 3]) @ np.linalg.inv(labels.affine[:3, :3]).T
    ijk = np.clip(np.rint(ijk).astype(int), 0, np.array(labels.shape) - 1)
    return labels.array[ijk[:, 0], ijk[:, 1], ijk[:, 2]] == value


def test_decimation_keeps_every_mesh_closed_and_the_same_volume(
    ct_labels: LabelMap, meshes: dict
) -> None:
    small = label_meshes(ct_labels, decimate=0.25)
    assert list(small) == list(meshes)
    kept = sum(len(m.faces) for m in small.values()) / sum(len(m.faces) for m in meshes.values())
    assert 0.24 < kept < 0.28  # thin ribs may keep up to ~40 % to stay manifold
    assert len(small[5].faces) == pytest.approx(0.25 * len(meshes[5].faces), rel=0.02)
    for value, mesh in small.items():
        name = ct_labels.labels[value]
        assert len(mesh.faces) < 0.5 * len(meshes[value].faces), name
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0, name
        assert mesh.volume == pytest.approx(label_volume_mm3(ct_labels, value), rel=0.05), name


def test_subset_skips_absent_labels_and_bad_options_are_refused(ct_labels: LabelMap) -> None:
    assert list(label_meshes(ct_labels, labels_subset=[999, 103, 2])) == [103]  # 2: no voxels
    with pytest.raises(InputError, match="decimate"):
        label_meshes(ct_labels, decimate=0.0)
    with pytest.raises(InputError, match="smooth_iterations"):
        label_meshes(ct_labels, smooth_iterations=-1)


def test_glb_has_one_named_coloured_node_per_label(
    ct_labels: LabelMap, meshes: dict, tmp_path: Path
) -> None:
    path = write_glb(meshes, ct_labels, tmp_path / "case" / "labels.glb")
    assert [p.name for p in path.parent.iterdir()] == ["labels.glb"]  # no temp file left
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene)
    names = {ct_labels.labels[v] for v in meshes}
    assert set(scene.geometry) == names
    assert set(scene.graph.nodes_geometry) == names and len(scene.graph.nodes_geometry) == 31
    liver = scene.geometry["liver"]
    assert tuple(liver.visual.material.baseColorFactor[:3]) == label_color(5, "liver")
    assert liver.metadata["label"] == 5
    header = _glb_json(path)
    assert header["asset"]["extras"]["medverse"]["units"] == "mm"
    assert header["asset"]["extras"]["medverse"]["space"] == "RAS"
    back = read_glb(path)
    assert back["liver"].is_watertight
    assert back["liver"].volume == pytest.approx(meshes[5].volume, rel=1e-5)
    np.testing.assert_allclose(back["liver"].bounds, meshes[5].bounds, atol=1e-3)


def _glb_json(path: Path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[12:16])
    return json.loads(data[20 : 20 + length])


def test_glb_refuses_nothing_to_write_and_unreadable_files(tmp_path: Path) -> None:
    target = tmp_path / "empty.glb"
    with pytest.raises(InputError, match="no label meshes"):
        write_glb({}, {}, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.write_bytes(b"not a glb")
    with pytest.raises(InputError, match=r"empty\.glb"):
        read_glb(target)


def test_stl_one_reloadable_file_per_label(
    ct_labels: LabelMap, meshes: dict, tmp_path: Path
) -> None:
    paths = write_stl(meshes, ct_labels, tmp_path / "stl")
    assert [p.name for p in paths][:2] == ["1_spleen.stl", "5_liver.stl"]
    assert sorted(p.name for p in (tmp_path / "stl").iterdir()) == sorted(p.name for p in paths)
    assert len(paths) == 31
    for path, mesh in zip(paths, [meshes[v] for v in sorted(meshes)], strict=True):
        back = trimesh.load(path)
        assert back.is_watertight, path.name
        assert back.volume == pytest.approx(mesh.volume, rel=1e-4), path.name
