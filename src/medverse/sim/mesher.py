"""Organ meshing: label surface, then fTetWild tetrahedra in a subprocess that can be killed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from medverse.core.errors import ConfigError, InputError
from medverse.core.volume import LabelMap
from medverse.io.mesh import label_meshes
from medverse.sim.tetmesh import TetMesh, dihedral_angles_deg


class MeshingError(InputError):
    """The tet mesher failed or ran past its time limit."""


@dataclass(frozen=True)
class MeshOptions:
    """How fine the tetrahedral mesh is and how long the mesher may run.

    Attributes:
        edge_length_mm: Target tetrahedron edge length (controls the element count).
        envelope: Largest distance of the tet boundary from the surface, relative to the
            bounding-box diagonal (fTetWild's epsilon).
        decimate: Fraction of surface faces kept before meshing (fewer faces mesh faster).
        optimize_iterations: fTetWild quality-optimisation passes.
        timeout_s: The mesher is killed after this many seconds.
        threads: Mesher threads (0 = all cores).
    """

    edge_length_mm: float = 10.0
    envelope: float = 4e-3
    decimate: float = 0.1
    optimize_iterations: int = 20
    timeout_s: float = 900.0
    threads: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.edge_length_mm <= 100.0:
            raise ConfigError(f"edge_length_mm must be in [0.5, 100], got {self.edge_length_mm}")
        if not 1e-4 <= self.envelope <= 5e-2:
            raise ConfigError(f"envelope must be in [1e-4, 5e-2], got {self.envelope}")
        if not 0.0 < self.decimate <= 1.0:
            raise ConfigError(f"decimate must be in (0, 1], got {self.decimate}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")


def structure_surface(labels: LabelMap, value: int, decimate: float) -> trimesh.Trimesh:
    """Closed outward surface of label ``value`` in RAS mm, volume matched to its voxels.

    Raises:
        InputError: If the label has no voxels or its surface is not a closed 2-manifold.
    """
    name = labels.labels.get(value, f"label {value}")
    if not np.any(np.asarray(labels.array) == value):
        raise InputError(f"structure {name!r} (label {value}) is empty: no voxels to mesh")
    surface = label_meshes(labels, labels_subset=[value], decimate=decimate)[value]
    check_closed_manifold(surface.vertices, surface.faces, name)
    return surface


def check_closed_manifold(vertices: np.ndarray, faces: np.ndarray, name: str) -> None:
    """Refuse a surface that is open, non-manifold, inconsistently wound or of no volume.

    Raises:
        InputError: Naming the structure and what is wrong with its surface.
    """
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if len(mesh.faces) < 4:
        raise InputError(f"structure {name!r}: surface has {len(mesh.faces)} faces, not a solid")
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    if np.any(counts != 2):
        bad = int(np.sum(counts != 2))
        raise InputError(
            f"structure {name!r}: surface is not a closed 2-manifold ({bad} edges are not "
            "shared by exactly two faces); fix the segmentation or choose another structure"
        )
    if not mesh.is_winding_consistent or mesh.volume <= 0:
        raise InputError(f"structure {name!r}: surface is inside out or encloses no volume")


def tetrahedralize(
    vertices: np.ndarray, faces: np.ndarray, options: MeshOptions, name: str = "surface"
) -> TetMesh:
    """Fill a closed surface with tetrahedra (fTetWild), in a subprocess killed at the timeout.

    Args:
        vertices: (n, 3) surface vertices (mm).
        faces: (m, 3) triangles.
        options: Size, envelope and time limit.
        name: Structure name for error messages.

    Returns:
        The tet mesh (same units as ``vertices``), positively oriented.

    Raises:
        InputError: If the surface is not a closed manifold.
        MeshingError: If the mesher fails, returns nothing, or runs past ``timeout_s``.
    """
    check_closed_manifold(vertices, faces, name)
    with tempfile.TemporaryDirectory(prefix="medverse-tetwild-") as tmp:
        src, dst = Path(tmp) / "surface.npz", Path(tmp) / "tets.npz"
        np.savez(
            src,
            vertices=vertices,
            faces=faces,
            edge_length=options.edge_length_mm,
            envelope=options.envelope,
            threads=options.threads,
            optimize_iterations=options.optimize_iterations,
        )
        command = [sys.executable, "-m", "medverse.sim.mesher_worker", str(src), str(dst)]
        try:
            done = subprocess.run(  # cwd: fTetWild drops __tracked_surface.stl in the cwd
                command,
                capture_output=True,
                text=True,
                timeout=options.timeout_s,
                check=False,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise MeshingError(
                f"structure {name!r}: the tet mesher did not finish within {options.timeout_s:g} s "
                "and was stopped; try a larger --edge-length or a longer --timeout"
            ) from None
        if done.returncode != 0 or not dst.exists():
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            raise MeshingError(f"structure {name!r}: the tet mesher failed: {tail}")
        data = np.load(dst)
        points, tets = data["points"], data["tets"]
    if len(tets) == 0:
        raise MeshingError(f"structure {name!r}: the tet mesher returned no tetrahedra")
    return TetMesh(points, tets).oriented()


@dataclass(frozen=True)
class MeshQuality:
    """Quality of a tet mesh against the label it came from.

    Attributes:
        nodes: Node count.
        tetrahedra: Element count.
        min_dihedral_deg: Smallest dihedral angle of any tetrahedron.
        max_dihedral_deg: Largest dihedral angle of any tetrahedron.
        mean_edge_mm: Mean edge length.
        volume_ml: Total tetrahedron volume.
        label_volume_ml: Voxel count x voxel volume of the label.
        volume_error_pct: 100 * (volume - label volume) / label volume.
    """

    nodes: int
    tetrahedra: int
    min_dihedral_deg: float
    max_dihedral_deg: float
    mean_edge_mm: float
    volume_ml: float
    label_volume_ml: float
    volume_error_pct: float


def mesh_quality(mesh: TetMesh, label_volume_mm3: float) -> MeshQuality:
    """Measure ``mesh`` (in mm) against the label volume."""
    angles = dihedral_angles_deg(mesh.points, mesh.tets)
    p = mesh.points[mesh.tets]
    edges = np.concatenate(
        [p[:, a] - p[:, b] for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))]
    )
    volume = float(mesh.volumes.sum())
    return MeshQuality(
        nodes=len(mesh.points),
        tetrahedra=len(mesh.tets),
        min_dihedral_deg=float(angles.min()),
        max_dihedral_deg=float(angles.max()),
        mean_edge_mm=float(np.linalg.norm(edges, axis=1).mean()),
        volume_ml=volume / 1000.0,
        label_volume_ml=label_volume_mm3 / 1000.0,
        volume_error_pct=100.0 * (volume - label_volume_mm3) / label_volume_mm3,
    )
