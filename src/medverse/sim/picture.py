"""A PNG of a tet mesh: its boundary surface in 3D and the histogram of dihedral angles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from medverse.io.atomic import atomic_path
from medverse.sim.tetmesh import TetMesh, dihedral_angles_deg

if TYPE_CHECKING:
    from medverse.sim.mesher import MeshQuality


def render_mesh_picture(mesh: TetMesh, quality: MeshQuality, title: str, path: str | Path) -> Path:
    """Write the picture to ``path`` atomically and return it."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    figure = Figure(figsize=(10, 4.5), dpi=100)
    ax3d = figure.add_subplot(1, 2, 1, projection="3d")
    faces = mesh.surface_faces()
    polys = Poly3DCollection(
        mesh.points[faces], facecolor=(0.8, 0.45, 0.4), edgecolor="k", linewidths=0.1, alpha=0.9
    )
    ax3d.add_collection3d(polys)
    low, high = mesh.points.min(axis=0), mesh.points.max(axis=0)
    centre, half = (low + high) / 2, (high - low).max() / 2
    for axis, setter in enumerate((ax3d.set_xlim, ax3d.set_ylim, ax3d.set_zlim)):
        setter(centre[axis] - half, centre[axis] + half)
    ax3d.set_xlabel("R-L (mm)")
    ax3d.set_ylabel("P-A (mm)")
    ax3d.set_zlabel("I-S (mm)")
    ax3d.set_title(f"{title}: {quality.tetrahedra} tets, {quality.nodes} nodes")
    hist = figure.add_subplot(1, 2, 2)
    hist.hist(dihedral_angles_deg(mesh.points, mesh.tets).ravel(), bins=90, range=(0, 180))
    hist.set_xlabel("dihedral angle (deg)")
    hist.set_ylabel("count")
    hist.set_title(
        f"min dihedral {quality.min_dihedral_deg:.1f} deg\nvolume {quality.volume_ml:.1f} ml "
        f"vs label {quality.label_volume_ml:.1f} ml ({quality.volume_error_pct:+.2f} %)"
    )
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)
