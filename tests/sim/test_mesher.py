"""``medverse sim mesh`` on the real CT sample, and its refusals (nothing half-written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from medverse.cli.main import main
from medverse.core.errors import InputError
from medverse.inference.report import measure, write_report
from medverse.io.nifti import read_nifti_labels
from medverse.sim.mesher import MeshingError, MeshOptions, tetrahedralize
from medverse.sim.organ_mesh import mesh_structure
from medverse.sim.tetmesh import read_tetmesh
from tests.conftest import CT_LABELS

NAMES = {1: "spleen", 5: "liver", 52: "aorta", 2: "kidney_right"}


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmentation result folder: the CT sample's TotalSegmentator labels and a report."""
    folder = tmp_path_factory.mktemp("result")
    shutil.copy(CT_LABELS, folder / "labels.nii.gz")
    write_report(measure(read_nifti_labels(CT_LABELS, NAMES)), folder / "report.json")
    return folder


def test_spleen_of_the_ct_sample_meshes_within_3_percent_of_its_volume(
    result_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "spleen"
    assert (
        main(
            [
                "sim",
                "mesh",
                str(result_dir),
                "--structure",
                "spleen",
                "--out",
                str(out),
                "--edge-length",
                "12",
            ]
        )
        == 0
    )
    mesh = read_tetmesh(out / "tetmesh.vtu")
    assert len(mesh.tets) > 1000 and (mesh.volumes > 0).all()
    label_ml = 130634 * 0.9765625 * 0.9765625 * 2.0 / 1000.0  # voxel count x voxel volume
    assert mesh.volumes.sum() / 1000.0 == pytest.approx(label_ml, rel=0.03)
    assert (out / "mesh.png").stat().st_size > 10_000
    assert '"min_dihedral_deg"' in (out / "quality.json").read_text()


def test_unknown_and_empty_structures_are_refused(result_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"no structure 'pancreas'; present: .*spleen"):
        mesh_structure(result_dir, "pancreas", out)
    with pytest.raises(InputError, match="'kidney_right' is empty"):
        mesh_structure(result_dir, "kidney_right", out)
    assert not out.exists()


def test_a_folder_without_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no labels.nii.gz here"):
        mesh_structure(tmp_path, "liver", tmp_path / "out")


def test_non_manifold_and_open_surfaces_are_refused() -> None:
    tet = trimesh.creation.box()
    # two boxes sharing one edge: that edge has four faces
    other = tet.copy()
    other.apply_translation([1.0, 1.0, 0.0])
    bowtie = trimesh.util.concatenate([tet, other])
    bowtie.merge_vertices()
    with pytest.raises(InputError, match="not a closed 2-manifold"):
        tetrahedralize(bowtie.vertices, bowtie.faces, MeshOptions(), "bowtie")
    with pytest.raises(InputError, match="not a closed 2-manifold"):
        tetrahedralize(tet.vertices, tet.faces[:-1], MeshOptions(), "open box")


def test_a_mesher_past_its_time_limit_is_stopped_and_nothing_is_written(
    result_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never"
    options = MeshOptions(edge_length_mm=0.5, timeout_s=3.0)  # ~10^7 tets: far past 3 s
    with pytest.raises(MeshingError, match="did not finish within 3 s"):
        mesh_structure(result_dir, "liver", out, options=options)
    assert not out.exists()


def test_out_of_range_material_fails_before_anything_is_written(
    result_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "sim",
            "mesh",
            str(result_dir),
            "--structure",
            "liver",
            "--out",
            str(out),
            "--poisson-ratio",
            "0.6",
        ]
    )
    assert code == 2
    assert "poisson_ratio = 0.6 is outside the accepted range" in capsys.readouterr().err
    assert not out.exists()


def test_box_surface_meshes_to_its_volume() -> None:
    box = trimesh.creation.box(extents=(40.0, 30.0, 20.0))
    mesh = tetrahedralize(np.asarray(box.vertices), np.asarray(box.faces), MeshOptions(5.0))
    assert (mesh.volumes > 0).all()
    assert mesh.volumes.sum() == pytest.approx(24000.0, rel=0.01)
