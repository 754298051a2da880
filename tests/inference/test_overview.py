"""The overview PNG: label colours visible, radiological orientation, CT window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medverse.core.errors import InputError
from medverse.core.registry import label_color
from medverse.core.volume import LabelMap, Volume
from medverse.inference.overview import render_overview
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.preprocessing.resample import resample_to_grid
from tests.conftest import CT_LABELS, CT_SERIES, HIPPOCAMPUS

HIPPO_NAMES = {1: "Anterior", 2: "Posterior"}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _where_color(rgb: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """(row, col) of the pixels that have exactly ``color`` (the label outlines)."""
    return np.argwhere(np.all(rgb == np.array(color, dtype=np.uint8), axis=-1))


@pytest.fixture(scope="module")
def hippo() -> tuple[Volume, LabelMap]:
    image = read_nifti(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz")
    labels = read_nifti_labels(HIPPOCAMPUS / "labelsTr" / "hippocampus_001.nii.gz", HIPPO_NAMES)
    return image, labels


def test_hippocampus_overview_shows_both_structures_in_their_colours(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    path = render_overview(image, labels, tmp_path / "overview.png")
    rgb = _pixels(path)
    assert rgb.std() > 20  # not blank
    for value, name in HIPPO_NAMES.items():
        assert len(_where_color(rgb, label_color(value, name))) > 200, name
    assert [p.name for p in tmp_path.iterdir()] == ["overview.png"]


def test_rows_are_capped_largest_first(hippo: tuple[Volume, LabelMap], tmp_path: Path) -> None:
    image, labels = hippo
    one = _pixels(render_overview(image, labels, tmp_path / "one.png", max_structures=1))
    two = _pixels(render_overview(image, labels, tmp_path / "two.png", max_structures=2))
    assert two.shape[0] > 1.5 * one.shape[0]
    # Posterior (1624 voxels) is larger than Anterior (1324): its axial slice is the one shown,
    # and the Anterior outline only appears where the two touch.
    posterior = _where_color(one, label_color(2, "Posterior"))
    anterior = _where_color(one, label_color(1, "Anterior"))
    assert len(posterior) > len(anterior)


def test_display_follows_patient_axes_not_array_order(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    """The same anatomy stored with a flipped and permuted array renders identically."""
    image, labels = hippo
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = image.shape[0] - 1
    swap = np.eye(4)[[1, 0, 2, 3]]
    affine = image.affine @ flip @ swap  # stored index (j, i', k) -> same world point
    stored = np.ascontiguousarray(image.array[::-1].transpose(1, 0, 2))
    stored_labels = np.ascontiguousarray(labels.array[::-1].transpose(1, 0, 2))
    other_image = Volume(stored, affine)
    other_labels = LabelMap(stored_labels, affine, labels=HIPPO_NAMES)
    a = _pixels(render_overview(image, labels, tmp_path / "a.png"))
    b = _pixels(render_overview(other_image, other_labels, tmp_path / "b.png"))
    assert np.array_equal(a, b)


def test_radiological_orientation(tmp_path: Path) -> None:
    """Patient right on screen left (axial, coronal), anterior left (sagittal), superior up."""
    image = Volume(np.random.default_rng(0).normal(100, 10, (40, 40, 40)), np.eye(4))
    array = np.zeros((40, 40, 40), dtype=np.uint8)
    array[24:29, 18:23, 18:23] = 1  # the structure in focus (largest), right of centre
    array[12:16, 18:22, 18:22] = 2  # to its patient-left
    array[24:28, 30:34, 18:22] = 3  # anterior to it
    array[24:28, 18:22, 30:34] = 4  # superior to it
    names = {1: "focus", 2: "left", 3: "anterior", 4: "superior"}
    labels = LabelMap(array, np.eye(4), labels=names)
    rgb = _pixels(render_overview(image, labels, tmp_path / "o.png", max_structures=1))
    third = rgb.shape[1] // 3
    axial, coronal, sagittal = rgb[:, :third], rgb[:, third : 2 * third], rgb[:, 2 * third :]

    def centre(panel: np.ndarray, value: int) -> np.ndarray:
        found = _where_color(panel, label_color(value, names[value]))
        assert len(found), f"{names[value]} not drawn"
        return found.mean(axis=0)  # (row, col)

    assert centre(axial, 1)[1] < centre(axial, 2)[1]  # right (focus) left of patient-left
    assert centre(axial, 3)[0] < centre(axial, 1)[0]  # anterior up
    assert centre(coronal, 1)[1] < centre(coronal, 2)[1]
    assert centre(coronal, 4)[0] < centre(coronal, 1)[0]  # superior up
    assert centre(sagittal, 3)[1] < centre(sagittal, 1)[1]  # anterior on the left
    assert centre(sagittal, 4)[0] < centre(sagittal, 1)[0]


def test_ct_overview_is_windowed_and_coloured(tmp_path: Path) -> None:
    ct = read_series(CT_SERIES)
    reference = read_nifti_labels(CT_LABELS, {1: "spleen", 5: "liver", 52: "aorta"})
    labels = resample_to_grid(reference, ct.affine, ct.shape, order=0)
    assert isinstance(labels, LabelMap)
    path = render_overview(ct, labels, tmp_path / "ct.png", max_structures=3)
    rgb = _pixels(path)
    assert len(_where_color(rgb, label_color(5, "liver"))) > 100
    assert len(_where_color(rgb, label_color(1, "spleen"))) > 100
    grey = rgb[(rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])][:, 0]
    assert (grey == 0).sum() > 1000  # air and lung below L40-W200 are black
    assert ((grey > 60) & (grey < 200)).sum() > 1000  # soft tissue is mid-grey


def test_labels_on_another_grid_are_refused(hippo: tuple[Volume, LabelMap], tmp_path: Path) -> None:
    image, labels = hippo
    shifted = LabelMap(labels.array, labels.affine + _shift(5.0), labels=HIPPO_NAMES)
    with pytest.raises(InputError, match="not on the image's grid"):
        render_overview(image, shifted, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _shift(mm: float) -> np.ndarray:
    out = np.zeros((4, 4))
    out[0, 3] = mm
    return out
