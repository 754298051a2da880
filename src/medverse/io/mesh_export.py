"""Writing label meshes: one GLB (a named, coloured node per label) or one STL per label.

Coordinates: vertices stay in the Volume convention, patient RAS+ millimetres, so a mesh overlays
its image exactly; the GLB says so in ``asset.extras.medverse`` (see ``COORDINATES``), with the
4x4 matrix a viewer applies to get glTF's +Y-up metres.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from trimesh.exchange.gltf import export_glb
from trimesh.visual.material import PBRMaterial

from medverse.core.errors import InputError
from medverse.core.registry import label_color
from medverse.core.volume import LabelMap
from medverse.io.atomic import write_bytes_atomic

# RAS mm -> glTF (+Y up, +Z front, metres): glTF x = patient Left (-R), y = Superior, z = Anterior.
RAS_MM_TO_GLTF = np.array(
    [
        [-0.001, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.001, 0.0],
        [0.0, 0.001, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)

COORDINATES: dict[str, Any] = {
    "space": "RAS",
    "units": "mm",
    "note": (
        "Vertices are patient coordinates, RAS+ millimetres (+x Right, +y Anterior, +z "
        "Superior), the same space as the source Volume affine, so meshes overlay the image "
        "exactly. They are NOT glTF's Y-up metres: apply ras_mm_to_gltf (row-major 4x4) as a "
        "root transform to view upright at true scale."
    ),
    "ras_mm_to_gltf": RAS_MM_TO_GLTF.tolist(),
}


def write_glb(
    meshes: Mapping[int, trimesh.Trimesh], labels: LabelMap | Mapping[int, str], path: str | Path
) -> Path:
    """Write all label meshes to one GLB file, atomically.

    Each label becomes one node and one mesh, both named after the structure (``"liver"``), with
    a PBR material coloured from the registry (``label_color``). Vertices are RAS+ mm; the
    convention and the RAS->glTF matrix are stored in ``asset.extras.medverse`` and in the scene
    extras; each mesh's extras hold its label value and volumes.

    Args:
        meshes: Label value -> mesh, as returned by ``label_meshes``.
        labels: The label map (or its ``{value: name}``) naming the structures.
        path: Target ``.glb`` file; its folder is created if needed.

    Returns:
        The written path.

    Raises:
        InputError: If there is no mesh to write.
    """
    path = Path(path)
    if not meshes:
        raise InputError("no label meshes to write (the label map has no labelled voxels)", path)
    names = _unique_names(meshes, labels)
    scene = trimesh.Scene()
    scene.metadata["medverse"] = COORDINATES
    for value, mesh in sorted(meshes.items()):
        name = names[value]
        part = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
        part.metadata.update(_json_safe(mesh.metadata), label=int(value))
        part.units = "mm"
        rgb = label_color(int(value), _names_of(labels).get(value, name))
        part.visual = trimesh.visual.TextureVisuals(material=_material(name, rgb))
        scene.add_geometry(part, node_name=name, geom_name=name)
    data = export_glb(scene, include_normals=True, tree_postprocessor=_stamp_asset)
    return write_bytes_atomic(path, data)


def read_glb(path: str | Path) -> dict[str, trimesh.Trimesh]:
    """Read a GLB written by ``write_glb`` back as structure name -> mesh (RAS mm).

    Args:
        path: A ``.glb`` file.

    Raises:
        InputError: If the file is missing or is not a readable GLB scene.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("GLB file not found", path)
    try:
        scene = trimesh.load_scene(path, file_type="glb", process=False)
    except Exception as error:  # trimesh raises many types on corrupt input
        raise InputError(
            f"not a readable GLB file ({type(error).__name__}: {error})", path
        ) from error
    out: dict[str, trimesh.Trimesh] = {}
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geometry = scene.geometry[geom_name]
        if isinstance(geometry, trimesh.Trimesh):
            out[str(node)] = geometry.copy().apply_transform(transform)
    return out


def write_stl(
    meshes: Mapping[int, trimesh.Trimesh], labels: LabelMap | Mapping[int, str], folder: str | Path
) -> list[Path]:
    """Write one binary STL per label, ``<value>_<name>.stl`` (RAS mm), each atomically.

    Args:
        meshes: Label value -> mesh, as returned by ``label_meshes``.
        labels: The label map (or its ``{value: name}``) naming the structures.
        folder: Output folder, created if needed.

    Returns:
        The written paths, ascending by label value.
    """
    folder = Path(folder)
    names = _names_of(labels)
    paths = []
    for value, mesh in sorted(meshes.items()):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", names.get(value, f"label_{value}"))
        data = trimesh.exchange.stl.export_stl(mesh)
        paths.append(write_bytes_atomic(folder / f"{value}_{safe}.stl", data))
    return paths


def _names_of(labels: LabelMap | Mapping[int, str]) -> Mapping[int, str]:
    return labels.labels if isinstance(labels, LabelMap) else labels


def _unique_names(
    meshes: Mapping[int, trimesh.Trimesh], labels: LabelMap | Mapping[int, str]
) -> dict[int, str]:
    """Node names: the structure name, suffixed with the value when two labels share one."""
    names = _names_of(labels)
    out: dict[int, str] = {}
    for value in sorted(meshes):
        name = names.get(value, f"label_{value}")
        out[value] = name if name not in out.values() else f"{name}_{value}"
    return out


def _material(name: str, rgb: tuple[int, int, int]) -> PBRMaterial:
    return PBRMaterial(
        name=name,
        baseColorFactor=[*rgb, 255],
        metallicFactor=0.0,
        roughnessFactor=0.7,
    )


def _json_safe(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the JSON-friendly scalar entries of a mesh's metadata."""
    keep = (str, int, float, bool)
    return {str(k): v for k, v in metadata.items() if isinstance(v, keep)}


def _stamp_asset(tree: dict[str, Any]) -> None:
    """Record the coordinate convention where glTF readers look first: ``asset.extras``."""
    tree["asset"]["generator"] = "medverse"
    tree["asset"].setdefault("extras", {})["medverse"] = COORDINATES
