"""An overview PNG: three orthogonal slices through each structure, labels overlaid in colour.

Display convention (radiological, as on a reading workstation): the volume is first reoriented
to the closest RAS axes; axial and coronal views show the patient's right on the image's left
(viewed from the feet / from the front), axial with anterior up, coronal and sagittal with
superior up; sagittal views are seen from the patient's left, anterior on the image's left.
Every panel carries orientation letters and is drawn with its physical (mm) aspect ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medverse.core.errors import InputError
from medverse.core.registry import label_color
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import atomic_path

CT_WINDOW = (40.0, 400.0)  # level, width in HU: soft tissue
MR_PERCENTILES = (0.5, 99.5)
FILL_ALPHA = 0.4
MIN_MARGIN_MM = 15.0
PANEL_INCHES = 3.0
DPI = 110

# Per view: the RAS axis held fixed, and the letters at (left, right, top, bottom).
VIEWS: dict[str, tuple[int, tuple[str, str, str, str]]] = {
    "axial": (2, ("R", "L", "A", "P")),
    "coronal": (1, ("R", "L", "S", "I")),
    "sagittal": (0, ("A", "P", "S", "I")),
}


@dataclass(frozen=True)
class _Canonical:
    """Image (scaled to 0..1) and labels on the closest RAS grid, with voxel sizes."""

    grey: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]


def render_overview(
    image: Volume,
    labels: LabelMap,
    path: str | Path,
    *,
    max_structures: int = 12,
    modality: str | None = None,
) -> Path:
    """Render three orthogonal slices through each structure to a PNG, atomically.

    Structures are shown largest first, at most ``max_structures`` of them; each row is titled
    with the structure's name and volume. Slices pass through the label voxel nearest the
    structure's centroid, cropped around the structure with a margin.

    Args:
        image: The image the labels were made from (same grid).
        labels: The label map; colours come from the registry.
        path: Target ``.png`` path.
        max_structures: Cap on the number of rows.
        modality: ``"CT"`` (soft-tissue window W400/L40) or anything else (0.5-99.5
            percentile scaling); defaults to ``image.modality``.

    Returns:
        The written path.

    Raises:
        InputError: If the labels are not on the image's grid.
    """
    _check_same_grid(image, labels)
    modality = modality or image.modality
    canonical = _to_canonical(image, labels, modality)
    rows = _rows(labels, canonical.labels, max_structures)
    colors = _color_table(labels.labels, canonical.labels)
    fig = Figure(figsize=(3 * PANEL_INCHES, max(len(rows), 1) * (PANEL_INCHES + 0.3)))
    axes = np.atleast_2d(fig.subplots(max(len(rows), 1), 3, squeeze=False))
    if not rows:
        _draw_row(axes[0], canonical, colors, None, "no structures found")
    for ax_row, (value, title) in zip(axes, rows):
        _draw_row(ax_row, canonical, colors, value, title)
    window = "W400/L40" if modality.upper() == "CT" else "percentile 0.5-99.5"
    fig.suptitle(f"{modality or 'image'} ({window}); radiological view", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def display_range(array: np.ndarray, modality: str) -> tuple[float, float]:
    """Return the intensity range mapped to black..white: a CT window or MR percentiles."""
    if modality.upper() == "CT":
        level, width = CT_WINDOW
        return level - width / 2, level + width / 2
    flat = np.asarray(array).ravel()
    sample = flat[:: max(1, flat.size // 1_000_000)].astype(np.float64)
    low, high = np.percentile(sample, MR_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def _check_same_grid(image: Volume, labels: LabelMap) -> None:
    if image.shape != labels.shape or not np.allclose(image.affine, labels.affine, atol=1e-3):
        raise InputError(
            f"the label map is not on the image's grid (label shape {labels.shape}, image "
            f"shape {image.shape}; shapes and affines must match)"
        )


def _to_canonical(image: Volume, labels: LabelMap, modality: str) -> _Canonical:
    ornt = nib.orientations.io_orientation(image.affine)
    low, high = display_range(image.array, modality)
    grey = (np.asarray(image.array, dtype=np.float32) - low) / (high - low)
    grey = nib.orientations.apply_orientation(np.clip(grey, 0.0, 1.0), ornt)
    lab = nib.orientations.apply_orientation(np.asarray(labels.array), ornt)
    spacing = [0.0, 0.0, 0.0]
    for axis, (new_axis, _flip) in enumerate(ornt):
        spacing[int(new_axis)] = image.spacing[axis]
    return _Canonical(grey, lab, (spacing[0], spacing[1], spacing[2]))


def _rows(labels: LabelMap, array: np.ndarray, cap: int) -> list[tuple[int, str]]:
    counts = np.bincount(array.ravel().astype(np.int64))
    present = [v for v in np.nonzero(counts)[0] if v != 0]
    present.sort(key=lambda v: -counts[v])
    rows = []
    for value in present[:cap]:
        name = labels.labels.get(int(value), f"label_{int(value)}")
        volume_ml = float(counts[value]) * labels.voxel_volume_ml
        rows.append((int(value), f"{name}: {_format_ml(volume_ml)}"))
    return rows


def _format_ml(volume_ml: float) -> str:
    digits = 1 if volume_ml >= 10 else 2 if volume_ml >= 1 else 3
    return f"{volume_ml:.{digits}f} mL"


def _color_table(names: Mapping[int, str], array: np.ndarray) -> np.ndarray:
    table = np.zeros((int(array.max(initial=0)) + 1, 3), dtype=np.float32)
    for value in range(1, table.shape[0]):
        table[value] = label_color(value, names.get(value, f"label_{value}"))
    return table


def _draw_row(
    axes: np.ndarray, canonical: _Canonical, colors: np.ndarray, value: int | None, title: str
) -> None:
    box = _crop_box(canonical, value)
    point = _slice_point(canonical.labels, value)
    for ax, (view, (axis, letters)) in zip(axes, VIEWS.items()):
        rgb, (width_mm, height_mm) = _view(canonical, colors, box, axis, point[axis])
        ax.imshow(rgb, interpolation="nearest", extent=(0, width_mm, height_mm, 0))
        _decorate(ax, view, letters)
    axes[0].set_title(title, loc="left", fontsize=10, fontweight="bold")


def _slice_point(array: np.ndarray, value: int | None) -> tuple[int, int, int]:
    """The structure's voxel nearest its centroid (the centroid itself may lie outside it)."""
    if value is None:
        return (array.shape[0] // 2, array.shape[1] // 2, array.shape[2] // 2)
    ijk = np.argwhere(array == value)
    nearest = ijk[np.argmin(((ijk - ijk.mean(axis=0)) ** 2).sum(axis=1))]
    return (int(nearest[0]), int(nearest[1]), int(nearest[2]))


def _crop_box(canonical: _Canonical, value: int | None) -> list[slice]:
    shape = canonical.labels.shape
    if value is None:
        return [slice(0, n) for n in shape]
    ijk = np.argwhere(canonical.labels == value)
    box = []
    for axis in range(3):
        low, high = int(ijk[:, axis].min()), int(ijk[:, axis].max())
        extent_mm = (high - low + 1) * canonical.spacing[axis]
        margin = int(np.ceil(max(MIN_MARGIN_MM, 0.3 * extent_mm) / canonical.spacing[axis]))
        box.append(slice(max(0, low - margin), min(shape[axis], high + margin + 1)))
    return box


def _view(
    canonical: _Canonical, colors: np.ndarray, box: list[slice], axis: int, index: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """One radiological 2D view as RGB uint8, with its width and height in mm."""
    picks: list[slice | int] = list(box)
    picks[axis] = index
    grey, lab = canonical.grey[tuple(picks)], canonical.labels[tuple(picks)]
    # Remaining axes (in order) become screen columns then rows; both are flipped so that
    # right / anterior land on the left and anterior / superior on top.
    grey, lab = grey[::-1, ::-1].T, lab[::-1, ::-1].T
    col_axis, row_axis = [a for a in range(3) if a != axis]
    size = (lab.shape[1] * canonical.spacing[col_axis], lab.shape[0] * canonical.spacing[row_axis])
    return _compose(grey, lab, colors), size


def _compose(grey: np.ndarray, lab: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Grey image with labels filled (blended) and outlined in their exact colours."""
    rgb = np.repeat(grey[..., None] * 255.0, 3, axis=2)
    inside = lab > 0
    rgb[inside] = (1 - FILL_ALPHA) * rgb[inside] + FILL_ALPHA * colors[lab[inside]]
    edge = np.zeros_like(inside)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge &= inside
    rgb[edge] = colors[lab[edge]]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _decorate(ax: Axes, view: str, letters: tuple[str, str, str, str]) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(view, fontsize=8)
    box = {"facecolor": "black", "alpha": 0.6, "pad": 1.0, "linewidth": 0}
    style: dict[str, Any] = {"color": "yellow", "fontsize": 8, "transform": ax.transAxes}
    style["bbox"] = box
    left, right, top, bottom = letters
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
