"""The checks an image passes before a model runs: modality, DICOM origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from medverse.core.errors import InputError
from medverse.inference.checks import check_modality, is_dicom, modality_problem
from tests.inference.helpers import ct_plan, hippo_plan, read_ct, read_hippo


def test_a_ct_series_is_refused_by_an_mr_model_with_the_file_named() -> None:
    ct, _ = read_ct()
    assert is_dicom(ct) and ct.modality == "CT"
    check_modality(ct, ct_plan(), "series")
    with pytest.raises(InputError, match="the image is CT but the model was trained on MR") as e:
        check_modality(ct, hippo_plan(), Path("series"))
    assert "series" in e.value.one_line()


def test_an_image_without_a_recorded_modality_passes() -> None:
    image, _ = read_hippo()  # NIfTI records no modality
    assert not is_dicom(image)
    check_modality(image, ct_plan(), "image.nii.gz")
    assert modality_problem(None, "CT") is None and modality_problem("", "MR") is None
    assert modality_problem("MR", "MR") is None
    assert modality_problem("PT", "CT") == "the image is PT but the model was trained on CT images"
