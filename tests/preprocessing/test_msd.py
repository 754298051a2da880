"""MSD dataset reading: real cases load; each kind of bad input is reported with its case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.core.registry import Modality
from medverse.core.volume import LabelMap
from medverse.io.nifti import read_nifti_labels, write_nifti
from medverse.preprocessing.msd import load_msd_dataset, read_msd_index
from tests.conftest import HIPPOCAMPUS

CASES = ("hippocampus_001", "hippocampus_003")


def make_dataset(root: Path, labels: dict[str, str] | None = None) -> Path:
    """Copy two real hippocampus cases into an MSD folder under ``root``."""
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
        for case in CASES:
            shutil.copy(HIPPOCAMPUS / sub / f"{case}.nii.gz", root / sub)
    meta = {
        "modality": {"0": "MRI"},
        "labels": labels or {"0": "background", "1": "Anterior", "2": "Posterior"},
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in CASES
        ],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_real_hippocampus_loads_with_names_and_matching_grids() -> None:
    dataset = load_msd_dataset(HIPPOCAMPUS, max_cases=4)
    assert dataset.modality == Modality.MR
    assert dataset.labels == {1: "Anterior", 2: "Posterior"}
    assert [c.name for c in dataset.cases][:2] == list(CASES)
    for case in dataset.cases:
        assert isinstance(case.label, LabelMap)
        assert case.label.shape == case.image.shape
        assert set(case.label.present_labels()) == {1, 2}
        assert np.allclose(case.label.affine, case.image.affine)


def test_index_lists_every_case_without_reading_images() -> None:
    index = read_msd_index(HIPPOCAMPUS)
    assert len(index.entries) == 208
    assert all(e.image_path.is_file() and e.label_path.is_file() for e in index.entries)


def test_missing_file_names_the_case_and_file(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    (root / "labelsTr" / "hippocampus_003.nii.gz").unlink()
    with pytest.raises(InputError) as info:
        load_msd_dataset(root)
    assert "hippocampus_003" in str(info.value)
    assert info.value.path == (root / "labelsTr" / "hippocampus_003.nii.gz").resolve()


def test_label_value_not_in_dataset_json_is_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", labels={"0": "background", "1": "Anterior"})
    with pytest.raises(InputError) as info:
        load_msd_dataset(root)
    assert "hippocampus_001" in str(info.value)
    assert "[2]" in info.value.problem


def test_label_shape_mismatch_names_the_case(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    path = root / "labelsTr" / "hippocampus_003.nii.gz"
    label = read_nifti_labels(path)
    write_nifti(label.with_array(np.ascontiguousarray(label.array[:-2])), path)
    with pytest.raises(InputError) as info:
        load_msd_dataset(root)
    assert "hippocampus_003" in info.value.problem
    assert "shape" in info.value.problem
    assert info.value.path == path.resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"labels": {"0": "bg"}, "modality": {"0": "PET"}, "training": []}), "PET"),
        (json.dumps({"labels": {"0": "bg"}, "modality": "CT", "training": []}), "training"),
        (
            json.dumps({"labels": {"0": "bg"}, "modality": "CT", "training": [{"image": "a"}]}),
            "label",
        ),
    ],
)
def test_malformed_dataset_json_is_reported(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(InputError) as info:
        read_msd_index(tmp_path)
    assert expected in info.value.problem
    assert info.value.path == (tmp_path / "dataset.json").resolve()


def test_folder_without_dataset_json(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"dataset\.json"):
        read_msd_index(tmp_path)


def test_fingerprinting_a_bad_dataset_names_the_case(tmp_path: Path) -> None:
    from medverse.preprocessing.fingerprint import fingerprint_msd_dataset

    root = make_dataset(tmp_path / "ds", labels={"0": "background", "2": "Posterior"})
    with pytest.raises(InputError, match="hippocampus_001") as info:
        fingerprint_msd_dataset(root)
    assert "[1]" in info.value.problem
