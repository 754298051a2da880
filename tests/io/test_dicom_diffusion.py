"""A diffusion series splits by b-value and gradient direction together (issue 13, item 1).

Built in the test set-up from a real MR series (the 40 slices of the shared hippocampus crop):
seven volumes as a two-shell scanner exports them, each slice a copy of the real one with its
own instance UID, acquisition time, DiffusionBValue and DiffusionGradientOrientation: two b=0
volumes (no direction), three directions at b=1000 and two of the same directions at b=2000.
No single attribute tells those volumes apart (b-value repeats across directions, a direction
repeats across shells, the b=0 volumes differ only in time), and the pixels fall off with b.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medverse.core.errors import DicomError
from medverse.io.dicom import describe_folder, read_image
from medverse.io.dicom.volumes import convert_volumes, read_volumes, volumes_summary
from tests.io.dicom_helpers import HIPPO_CROP

X, Y, Z = (1.0, 0.0, 0.0), (0.0, 0.7071, 0.7071), (0.0, 0.0, 1.0)
# in acquisition order: (b-value, direction or None for b=0)
DWI = [(0, None), (1000, X), (1000, Y), (1000, Z), (0, None), (2000, X), (2000, Y)]


def _direction_text(direction: tuple[float, float, float] | None) -> str:
    return "" if direction is None else "\\".join(str(v) for v in direction)


@pytest.fixture(scope="module")
def dwi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dwi")
    series_uid = generate_uid()
    for source in sorted(HIPPO_CROP.iterdir()):
        for k, (b_value, direction) in enumerate(DWI):
            ds = pydicom.dcmread(source)
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.AcquisitionTime = f"1200{k:02d}.000000"
            ds.DiffusionBValue = float(b_value)
            if direction is not None:
                ds.DiffusionGradientOrientation = list(direction)
            ds.PixelData = (ds.pixel_array // (1 + b_value // 1000)).astype(np.int16).tobytes()
            ds.save_as(folder / f"{source.stem}_{k}.dcm")
    return folder


def test_volumes_are_told_apart_by_b_value_and_direction_in_acquisition_order(
    dwi_folder: Path,
) -> None:
    volumes = read_volumes(dwi_folder)
    assert [v.attributes[:2] for v in volumes] == [
        ("DiffusionBValue", "DiffusionGradientOrientation")
    ] * len(DWI)
    assert [(float(v.values[0]), v.values[1]) for v in volumes] == [
        (float(b), _direction_text(d)) for b, d in DWI
    ]
    reference = read_image(HIPPO_CROP).array
    for volume, (b_value, _) in zip(volumes, DWI):
        assert volume.volume.shape == reference.shape
        assert np.array_equal(volume.volume.array, reference // (1 + b_value // 1000))
        assert np.allclose(volume.volume.affine, read_image(HIPPO_CROP).affine, atol=1e-3)


def test_convert_writes_4d_with_each_volume_b_value_and_direction(
    dwi_folder: Path, tmp_path: Path
) -> None:
    convert_volumes(dwi_folder, tmp_path / "dwi.nii.gz")
    assert nib.load(tmp_path / "dwi.nii.gz").shape == (*read_image(HIPPO_CROP).shape, len(DWI))
    sidecar = json.loads((tmp_path / "dwi.json").read_text())
    assert [
        (float(v["DiffusionBValue"]), v["DiffusionGradientOrientation"]) for v in sidecar["volumes"]
    ] == [(float(b), _direction_text(d)) for b, d in DWI]


def test_info_names_both_attributes_and_a_plain_read_refuses_listing_the_volumes(
    dwi_folder: Path,
) -> None:
    (series,) = describe_folder(dwi_folder).series
    summary = volumes_summary(series)
    assert summary is not None
    assert summary.startswith(
        "7 volumes of 40 slices by DiffusionBValue+DiffusionGradientOrientation"
    )
    with pytest.raises(DicomError, match="choose one with --volume K"):
        read_image(dwi_folder)
    assert np.array_equal(
        read_image(dwi_folder, volume=6).array, read_volumes(dwi_folder)[5].volume.array
    )
