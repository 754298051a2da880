"""DICOM SEG write/read on the real CT, its TotalSegmentator labels and the dcmqi liver SEG."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from medverse.core.errors import DicomError, InputError
from medverse.core.registry import label_color, label_map
from medverse.core.volume import LabelMap, Volume
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti_labels
from medverse.io.seg import read_seg, write_seg
from tests.conftest import CT_LABELS, CT_SERIES, DCMQI
from tests.io.dicom_helpers import CT_3SLICE, T1POST

LIVER = 5
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def onto_grid(labels: Volume, grid: Volume) -> np.ndarray:
    """Nearest-neighbour copy of ``labels`` onto ``grid`` through the two affines."""
    index = np.linalg.inv(labels.affine) @ grid.affine
    assert np.allclose(index[:3, :3], np.rint(index[:3, :3]), atol=1e-4)  # pure axis flips
    ijk = np.indices(grid.shape).reshape(3, -1)
    src = np.rint(index[:3, :3] @ ijk + index[:3, 3:4]).astype(int)
    assert (src >= 0).all() and (src < np.array(labels.shape)[:, None]).all()
    return labels.array[src[0], src[1], src[2]].reshape(grid.shape)


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_series(CT_SERIES)


@pytest.fixture(scope="module")
def ct_labels(ct: Volume) -> LabelMap:
    nifti = read_nifti_labels(CT_LABELS)
    array = onto_grid(nifti, ct)
    names = {v: info.name for v, info in label_map("totalseg_total").items()}
    present = [int(v) for v in np.unique(array) if v]
    return LabelMap(array, ct.affine, {}, labels={v: names[v] for v in present})


@pytest.fixture(scope="module")
def ct_seg(ct: Volume, ct_labels: LabelMap, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seg(ct_labels, ct, tmp_path_factory.mktemp("seg") / "ct_seg.dcm")


def world_centroid(volume: Volume, value: int) -> np.ndarray:
    ijk = np.argwhere(volume.array == value).mean(axis=0)
    return volume.index_to_world(ijk)


def test_nifti_labels_mapped_onto_the_dicom_grid_look_sane(ct_labels: LabelMap, ct: Volume) -> None:
    nifti = read_nifti_labels(CT_LABELS)
    assert len(ct_labels.present_labels()) == 31
    assert ct_labels.labels[LIVER] == "liver"
    assert (ct_labels.array == LIVER).sum() == (nifti.array == LIVER).sum() > 10_000
    # The same liver in world coordinates, whichever grid it is on.
    assert np.allclose(world_centroid(ct_labels, LIVER), world_centroid(nifti, LIVER), atol=1e-3)


def test_seg_reads_with_highdicom_and_pydicom_and_references_the_source(
    ct_seg: Path, ct: Volume, ct_labels: LabelMap
) -> None:
    seg = hd.seg.segread(ct_seg)
    assert seg.SegmentationType == "LABELMAP"
    assert sorted(seg.get_segment_numbers()) == ct_labels.present_labels()
    liver = seg.get_segment_description(LIVER)
    assert liver.segment_label == "liver"
    assert liver.segmented_property_type == codes.SCT.Liver
    assert list(liver.RecommendedDisplayCIELabValue) == list(
        hd.color.CIELabColor.from_rgb(*label_color(LIVER, "liver")).value
    )
    ds = pydicom.dcmread(ct_seg)
    assert ds.Modality == "SEG"
    referenced = {
        item.ReferencedSOPInstanceUID
        for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert ct.dicom is not None
    assert referenced == set(ct.dicom.sop_instance_uids)
    uids = list(ct.dicom.sop_instance_uids)
    frames = ds.pixel_array
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        k = uids.index(source.ReferencedSOPInstanceUID)
        # Frame of slice k is labels[:, :, k] transposed, at that slice's position.
        assert np.array_equal(frames[n], ct_labels.array[:, :, k].T)
        position = pydicom.dcmread(ct.dicom.files[k]).ImagePositionPatient
        assert np.allclose(item.PlanePositionSequence[0].ImagePositionPatient, position)


def test_round_trip_onto_the_reference_is_exact(
    ct_seg: Path, ct: Volume, ct_labels: LabelMap
) -> None:
    back = read_seg(ct_seg, reference=ct)
    assert np.array_equal(back.array, ct_labels.array)
    assert np.array_equal(back.affine, ct.affine)
    assert dict(back.labels) == dict(ct_labels.labels)


def test_without_reference_the_seg_grid_matches_world_coordinates(
    ct_seg: Path, ct: Volume, ct_labels: LabelMap, tmp_path: Path
) -> None:
    full = read_seg(ct_seg)
    kept = np.flatnonzero(ct_labels.array.any(axis=(0, 1)))
    first, last = int(kept[0]), int(kept[-1])
    assert full.shape == (512, 512, last - first + 1)
    assert np.allclose(full.affine[:3, :3], ct.affine[:3, :3], atol=1e-3)
    assert np.allclose(full.affine[:3, 3], ct.index_to_world([0, 0, first]), atol=1e-3)
    assert np.array_equal(full.array, ct_labels.array[:, :, first : last + 1])
    # Only slices 6..13 labelled: the SEG stores 8 frames, placed where they belong.
    cropped = ct_labels.array.copy()
    cropped[:, :, :6] = 0
    cropped[:, :, 14:] = 0
    path = write_seg(ct_labels.with_array(cropped), ct, tmp_path / "cropped.dcm")
    own = read_seg(path)
    assert own.shape == (512, 512, 8)
    assert np.allclose(own.affine[:3, 3], ct.index_to_world([0, 0, 6]), atol=1e-3)
    assert np.allclose(
        world_centroid(own, LIVER), world_centroid(ct_labels.with_array(cropped), LIVER), atol=1e-3
    )


def test_binary_seg_round_trips_with_labels_renumbered(
    ct: Volume, ct_labels: LabelMap, tmp_path: Path
) -> None:
    path = write_seg(ct_labels, ct, tmp_path / "binary.dcm", segmentation_type="BINARY")
    assert hd.seg.segread(path).SegmentationType == "BINARY"
    back = read_seg(path, reference=ct)
    present = ct_labels.present_labels()
    lookup = np.zeros(max(present) + 1, dtype=np.uint8)
    lookup[present] = np.arange(1, len(present) + 1)
    assert np.array_equal(back.array, lookup[ct_labels.array])
    assert back.labels == {n: ct_labels.labels[v] for n, v in enumerate(present, start=1)}


def test_oblique_mr_seg_keeps_world_geometry(tmp_path: Path) -> None:
    mr = read_series(T1POST)  # tilted ~10.8 degrees: no axis-aligned shortcut works
    array = np.zeros(mr.shape, dtype=np.uint8)
    array[100:180, 120:200, 8:14] = 1
    array[60:90, 60:90, 3:5] = 2
    labels = LabelMap(array, mr.affine, {}, labels={1: "tumor", 2: "roi_a"})
    path = write_seg(labels, mr, tmp_path / "mr_seg.dcm")
    assert np.array_equal(read_seg(path, reference=mr).array, array)
    own = read_seg(path)
    assert own.shape == (280, 320, 11)
    assert np.allclose(own.affine[:3, :3], mr.affine[:3, :3], atol=1e-3)
    assert np.allclose(own.affine[:3, 3], mr.index_to_world([0, 0, 3]), atol=1e-3)
    for value in (1, 2):
        assert np.allclose(world_centroid(own, value), world_centroid(labels, value), atol=1e-3)
    seg = hd.seg.segread(path)
    assert seg.get_segment_description(1).segmented_property_type == codes.SCT.Tumor
    roi = seg.get_segment_description(2)  # a name SNOMED does not know: generic codes
    assert (roi.segmented_property_category, roi.segmented_property_type) == (
        codes.SCT.Tissue,
        codes.SCT.Organ,
    )


def test_dcmqi_liver_seg_equals_its_nrrd_on_the_reference() -> None:
    nrrd = pytest.importorskip("nrrd")
    reference = read_series(CT_3SLICE)
    liver = read_seg(DCMQI / "liver_seg.dcm", reference=reference)
    mask, header = nrrd.read(str(DCMQI / "liver_seg.nrrd"))  # (x, y, z) in LPS
    assert header["space"] == "left-posterior-superior"
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(header["space directions"]).T
    lps[:3, 3] = header["space origin"]
    expected = onto_grid(Volume(mask, LPS_TO_RAS @ lps), reference)
    assert liver.labels == {1: "Liver"}
    assert int(liver.array.sum()) == 107_098
    assert np.array_equal(liver.array, expected)
    own = read_seg(DCMQI / "liver_seg.dcm")
    assert np.allclose(own.affine, reference.affine, atol=1e-3)
    assert np.array_equal(own.array, expected)


def test_dcmqi_liver_rewritten_by_medverse_round_trips(tmp_path: Path) -> None:
    reference = read_series(CT_3SLICE)
    liver = read_seg(DCMQI / "liver_seg.dcm", reference=reference)
    path = write_seg(liver, reference, tmp_path / "liver_again.dcm")
    back = read_seg(path, reference=reference)
    assert np.array_equal(back.array, liver.array)
    assert back.labels == {1: "Liver"}


@pytest.mark.filterwarnings("ignore:The string")  # highdicom on the one-part name JANCT000
def test_overlapping_binary_segments_higher_number_wins(tmp_path: Path) -> None:
    reference = read_series(CT_3SLICE)
    assert reference.dicom is not None
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference.dicom.files]
    for ds in sources:
        del ds.SpecificCharacterSet  # empty in these files; highdicom refuses ''
    stacked = np.zeros((3, 512, 512, 2), dtype=np.uint8)
    stacked[:, 100:200, 100:200, 0] = 1
    stacked[:, 150:250, 150:250, 1] = 1  # overlaps segment 1 on [150:200, 150:200]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=f"s{n}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Organ,
            algorithm_type="MANUAL",
        )
        for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        sources,
        stacked,
        "BINARY",
        descriptions,
        hd.UID(),
        1,
        hd.UID(),
        1,
        "test",
        "test",
        "1",
        "1",
    )
    assert seg.SegmentsOverlap == "YES"
    seg.save_as(tmp_path / "overlap.dcm")
    back = read_seg(tmp_path / "overlap.dcm", reference=reference)
    row, col = 175, 175  # inside both squares (array is [col, row, slice])
    assert back.array[col, row, 0] == 2
    assert back.array[120, 120, 0] == 1 and back.array[220, 220, 0] == 2


def test_frames_without_source_references_are_placed_by_geometry(
    ct_seg: Path, ct: Volume, ct_labels: LabelMap, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(ct_seg)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    ds.save_as(tmp_path / "no_refs.dcm")
    back = read_seg(tmp_path / "no_refs.dcm", reference=ct)
    assert np.array_equal(back.array, ct_labels.array)


def test_frames_that_do_not_fit_the_reference_are_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(DCMQI / "liver_seg.dcm")
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [0.5, 0.5]
    ds.save_as(tmp_path / "wrong_spacing.dcm")
    with pytest.raises(DicomError, match="pixel spacing differs"):
        read_seg(tmp_path / "wrong_spacing.dcm", reference=read_series(CT_3SLICE))


def test_a_file_that_is_not_a_seg_gives_a_clear_dicom_error(tmp_path: Path) -> None:
    ct_file = next(CT_3SLICE.iterdir())
    with pytest.raises(DicomError, match="is not a DICOM SEG") as caught:
        read_seg(ct_file)
    assert caught.value.path == ct_file
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom")
    with pytest.raises(DicomError, match="not a readable DICOM file"):
        read_seg(text)


def test_seg_read_onto_a_different_series_is_refused(ct: Volume) -> None:
    with pytest.raises(DicomError, match="not slices of the reference series"):
        read_seg(DCMQI / "liver_seg.dcm", reference=ct)


def test_write_refuses_off_grid_or_empty_labels_and_leaves_nothing(
    ct: Volume, ct_labels: LabelMap, tmp_path: Path
) -> None:
    target = tmp_path / "out.dcm"
    moved = ct.affine.copy()
    moved[0, 3] += 1.0
    shifted = LabelMap(ct_labels.array, moved, {}, labels=ct_labels.labels)
    with pytest.raises(InputError, match="does not match the source series grid"):
        write_seg(shifted, ct, target)
    with pytest.raises(InputError, match="holds no labels"):
        write_seg(ct_labels.with_array(np.zeros_like(ct_labels.array)), ct, target)
    assert ct.dicom is not None
    wrong_files = replace(ct, dicom=replace(ct.dicom, files=ct.dicom.files[::-1]))
    with pytest.raises(DicomError, match="SOP Instance UID differs"):
        write_seg(ct_labels, wrong_files, target)
    assert list(tmp_path.iterdir()) == []


def test_other_real_seg_reads_on_its_own_grid() -> None:
    seg = read_seg(DCMQI / "qin_headneck_sr" / "seg.dcm")
    assert seg.shape[:2] == (128, 128)
    assert seg.present_labels() == [1]
    assert "Neoplasm" in seg.labels[1]
