"""Tetrahedral meshes: the container, structured box meshes, quality measures and file I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medverse.core.errors import InputError
from medverse.io.atomic import atomic_path

# The six tetrahedra of a hexahedral cell (Kuhn split along the 0-6 diagonal); corner numbering
# 0..7 is (i, j, k) bits x + 2y + 4z. Every tetrahedron has positive orientation.
_KUHN = np.array(
    [[0, 1, 3, 7], [0, 1, 7, 5], [0, 5, 7, 4], [0, 3, 2, 7], [0, 2, 6, 7], [0, 6, 4, 7]]
)
# Faces of a tetrahedron, wound outwards for a positively oriented (v0, v1, v2, v3).
_TET_FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


@dataclass
class TetMesh:
    """Nodes and tetrahedra; positions in metres.

    Attributes:
        points: (n, 3) float64 node positions.
        tets: (m, 4) int32 node indices, positively oriented (signed volume > 0).
    """

    points: np.ndarray
    tets: np.ndarray

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float64)
        self.tets = np.ascontiguousarray(self.tets, dtype=np.int32)
        if self.points.ndim != 2 or self.points.shape[1] != 3 or len(self.points) < 4:
            raise InputError(f"a tet mesh needs (n >= 4, 3) points, got {self.points.shape}")
        if self.tets.ndim != 2 or self.tets.shape[1] != 4 or len(self.tets) == 0:
            raise InputError(f"a tet mesh needs (m >= 1, 4) tetrahedra, got {self.tets.shape}")
        if self.tets.min() < 0 or self.tets.max() >= len(self.points):
            raise InputError("tetrahedra refer to nodes that do not exist")

    @property
    def volumes(self) -> np.ndarray:
        """Signed volume of each tetrahedron (m^3 for a mesh in metres)."""
        return signed_volumes(self.points, self.tets)

    def oriented(self) -> TetMesh:
        """Return a copy where negatively wound tetrahedra are flipped (swap two nodes)."""
        tets = self.tets.copy()
        flip = self.volumes < 0
        tets[flip] = tets[flip][:, [0, 2, 1, 3]]
        return TetMesh(self.points.copy(), tets)

    def surface_faces(self, active: np.ndarray | None = None) -> np.ndarray:
        """Boundary triangles (faces used by exactly one tetrahedron), wound outwards."""
        tets = self.tets if active is None else self.tets[active.astype(bool)]
        return boundary_faces(tets)


def signed_volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volume of each tetrahedron."""
    p = points[tets]
    edges = p[:, 1:] - p[:, :1]
    return np.einsum("ij,ij->i", np.cross(edges[:, 0], edges[:, 1]), edges[:, 2]) / 6.0


def boundary_faces(tets: np.ndarray) -> np.ndarray:
    """Triangles used by exactly one of ``tets``, wound outwards."""
    if len(tets) == 0:
        return np.zeros((0, 3), dtype=np.int32)
    faces = tets[:, _TET_FACES].reshape(-1, 3)
    keys = np.sort(faces, axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return np.ascontiguousarray(faces[counts[inverse.ravel()] == 1], dtype=np.int32)


def box_mesh(size: tuple[float, float, float], cells: tuple[int, int, int]) -> TetMesh:
    """A box [0, sx] x [0, sy] x [0, sz] split into hexahedral cells of six tetrahedra each.

    Args:
        size: Edge lengths in metres.
        cells: Number of cells along x, y and z.
    """
    nx, ny, nz = cells
    axes = [np.linspace(0.0, s, n + 1) for s, n in zip(size, cells)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    node = np.arange((nx + 1) * (ny + 1) * (nz + 1)).reshape(nx + 1, ny + 1, nz + 1)
    i, j, k = (a.ravel() for a in np.meshgrid(range(nx), range(ny), range(nz), indexing="ij"))
    corners = np.stack(
        [node[i + (c & 1), j + ((c >> 1) & 1), k + ((c >> 2) & 1)] for c in range(8)], axis=1
    )
    tets = corners[:, _KUHN].reshape(-1, 4)
    return TetMesh(grid, tets).oriented()


def dihedral_angles_deg(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(m, 6) interior dihedral angles of each tetrahedron, in degrees."""
    p = points[tets]
    normals = np.stack(
        [np.cross(p[:, f[1]] - p[:, f[0]], p[:, f[2]] - p[:, f[0]]) for f in _TET_FACES], axis=1
    )
    normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-300)
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    cosines = np.stack([np.einsum("ij,ij->i", normals[:, a], normals[:, b]) for a, b in pairs], 1)
    # outward normals: the interior dihedral angle is pi minus the angle between them
    return 180.0 - np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def write_tetmesh(mesh: TetMesh, path: str | Path) -> Path:
    """Write the mesh as VTK unstructured grid (.vtu, via meshio), atomically."""
    import meshio

    path = Path(path)
    with atomic_path(path) as tmp:
        meshio.write(tmp, meshio.Mesh(mesh.points, [("tetra", mesh.tets)]), file_format="vtu")
    return path


def read_tetmesh(path: str | Path) -> TetMesh:
    """Read a tetrahedral mesh written by :func:`write_tetmesh` (any meshio format).

    Raises:
        InputError: If the file is unreadable or holds no tetrahedra.
    """
    import meshio

    try:
        data = meshio.read(path)
    except Exception as error:  # meshio raises many kinds; the user needs the file and why
        raise InputError(f"cannot read tet mesh: {error}", path) from None
    tets = [c.data for c in data.cells if c.type == "tetra"]
    if not tets:
        raise InputError("holds no tetrahedra", path)
    return TetMesh(data.points, np.concatenate(tets)).oriented()
