"""DICOM SEG on the vendor samples that used to fail after inference (issue 13) and the demo CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from medverse.core.errors import DicomError
from medverse.core.registry import label_map
from medverse.core.volume import LabelMap, Volume
from medverse.io.dicom import read_series
from medverse.io.dicom.header import read_header
from medverse.io.nifti import read_nifti_labels
from medverse.io.seg import check_seg_source, read_seg, write_seg
from tests.conftest import REPO
from tests.io.dicom_helpers import VENDOR_SAMPLES, copy_series, dciodvfy_errors

GE_JITTER = VENDOR_SAMPLES / "ge_mprage_iop_jitter"
UIH_DATES = VENDOR_SAMPLES / "uih_t1_star_dates"
ENHANCED = VENDOR_SAMPLES / "siemens_xa_enhanced_3d"
DEMO_CT = REPO / "examples" / "ct_abdomen" / "dicom"
SOURCES = [GE_JITTER, UIH_DATES, ENHANCED, DEMO_CT]
MODEL = REPO / "models" / "hippocampus_dynunet.pt"


def _hippocampus_labels(volume: Volume) -> LabelMap:
    """The hippocampus label map's two parts as boxes on the volume's own grid."""
    names = {value: info.name for value, info in label_map("hippocampus").items()}
    array = np.zeros(volume.shape, dtype=np.uint8)
    i, j, k = (s // 2 for s in volume.shape)
    array[i - 8 : i, j - 6 : j + 6, max(k - 3, 0) : k + 2] = 1
    array[i : i + 8, j - 6 : j + 6, max(k - 2, 0) : k + 3] = 2
    return LabelMap(array=array, affine=volume.affine, dicom=volume.dicom, labels=names)


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
@pytest.mark.parametrize("folder", SOURCES, ids=lambda p: p.name if p != DEMO_CT else "demo_ct")
def test_seg_is_written_valid_and_reads_back_onto_the_source_grid(
    folder: Path, kind: str, tmp_path: Path
) -> None:
    source = read_series(folder)
    labels = _hippocampus_labels(source)
    path = write_seg(labels, source, tmp_path / "seg.dcm", segmentation_type=kind)
    back = read_seg(path, reference=source)
    assert np.array_equal(back.array, labels.array)  # same values: segment number = label
    seg = pydicom.dcmread(path)
    header = read_header(source.dicom.files[0] if source.dicom else path)
    assert seg.StudyInstanceUID == header.study_uid != ""  # never empty (the demo CT's are)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == header.series_uid != ""
    assert dciodvfy_errors(path) == []


def test_ge_orientation_jitter_is_snapped_for_the_seg_and_said() -> None:
    checked = check_seg_source(read_series(GE_JITTER))
    orientations = {tuple(ds.ImageOrientationPatient) for ds in checked.datasets}
    assert len(orientations) == 1  # 7 different strings in the files
    assert any("ImageOrientationPatient snapped" in note for note in checked.notes)
    assert "seg_notes" in checked.report_fields()


def test_uih_star_dates_are_left_out_of_the_seg(tmp_path: Path) -> None:
    source = read_series(UIH_DATES)
    checked = check_seg_source(source)
    assert any("StudyDate" in note and "PatientBirthDate" in note for note in checked.notes)
    seg = pydicom.dcmread(write_seg(_hippocampus_labels(source), source, tmp_path / "s.dcm"))
    assert seg.StudyDate == "" and seg.PatientBirthDate == ""  # Type 2: present, empty
    assert "***" not in {str(seg.get(k, "")) for k in ("StudyDate", "StudyTime", "PatientAge")}


def test_enhanced_multiframe_source_is_referenced_frame_by_frame(tmp_path: Path) -> None:
    source = read_series(ENHANCED)
    labels = _hippocampus_labels(source)
    path = write_seg(labels, source, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    sop_uid = source.dicom.sop_instance_uids[0] if source.dicom else ""
    frames = set()
    for item in seg.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == sop_uid
        frames.add(int(ref.ReferencedFrameNumber))
    order = check_seg_source(source).slice_of_frame  # source frame f shows volume slice k
    labelled = {f + 1 for f, k in enumerate(order) if labels.array[:, :, k].any()}
    assert frames == labelled and len(frames) == 6  # empty frames are left out of the SEG


def test_hippocampus_parts_are_coded_as_the_structure_with_a_separate_modifier(
    tmp_path: Path,
) -> None:
    source = read_series(GE_JITTER)
    seg = pydicom.dcmread(write_seg(_hippocampus_labels(source), source, tmp_path / "s.dcm"))
    coded = {}
    for segment in seg.SegmentSequence:
        if segment.SegmentNumber == 0:
            continue  # LABELMAP background
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        modifier = kind.SegmentedPropertyTypeModifierCodeSequence[0]
        category = segment.SegmentedPropertyCategoryCodeSequence[0]
        assert category.CodeValue == codes.SCT.AnatomicalStructure.value
        coded[segment.SegmentLabel] = (kind.CodeValue, kind.CodeMeaning, modifier.CodeValue)
    assert coded == {
        "Anterior": (codes.SCT.Hippocampus.value, "Hippocampus", codes.SCT.Anterior.value),
        "Posterior": (codes.SCT.Hippocampus.value, "Hippocampus", codes.SCT.Posterior.value),
    }


def test_preflight_names_a_source_file_that_went_missing(tmp_path: Path) -> None:
    files = copy_series(GE_JITTER, tmp_path / "ge")
    source = read_series(tmp_path / "ge")
    files[3].unlink()
    with pytest.raises(DicomError, match=files[3].name):
        check_seg_source(source)


@pytest.mark.slow
@pytest.mark.parametrize("folder", [GE_JITTER, UIH_DATES, ENHANCED], ids=lambda p: p.name)
def test_segment_with_the_hippocampus_model_writes_a_valid_seg(
    folder: Path, tmp_path: Path
) -> None:
    """The shipped model on each sample (overlap 0): the whole bundle, the SEG valid and exact."""
    from medverse.inference.api import segment  # io tests reach inference only here

    result = segment(folder, model_path=MODEL, out_dir=tmp_path, overlap=0.0, progress=False)
    assert result.outputs.seg is not None
    source = read_series(folder)
    labels = read_nifti_labels(result.outputs.labels)
    back = read_seg(result.outputs.seg, reference=source)
    assert labels.present_labels() and np.array_equal(back.array, labels.array)
    assert dciodvfy_errors(result.outputs.seg) == []
    assert result.report.study["seg_study_uid"] == read_header(next(folder.iterdir())).study_uid
