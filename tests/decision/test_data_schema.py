"""The real UCI tables: sites, missing values made explicit (zero codes too), range checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.decision.data import Table, load_heart_failure, read_heart_disease_site
from medverse.decision.schema import HEART_DISEASE


def test_four_hospitals_load_with_their_patient_counts(heart: Table) -> None:
    sites, counts = np.unique(heart.sites, return_counts=True)
    assert dict(zip(sites.tolist(), counts.tolist())) == {
        "cleveland": 303, "hungarian": 294, "switzerland": 123, "va": 200,
    }  # fmt: skip
    assert heart.labels.sum() == 509  # num > 0 across the four files


def test_switzerland_cholesterol_zero_is_read_as_missing_not_as_a_value(heart: Table) -> None:
    swiss = heart.select(["switzerland"]).missing_fraction()
    assert swiss["chol"] == 1.0  # every Swiss record writes 0 = not measured
    assert swiss["ca"] > 0.9
    va = heart.select(["va"])
    chol = va.features[:, HEART_DISEASE.names.index("chol")]
    assert np.isnan(chol).sum() == 56  # 7 written '?' + 49 written 0
    assert np.nanmin(chol) > 50  # no zero survived as a measurement
    assert heart.select(["cleveland"]).missing_fraction()["chol"] == 0.0


def test_heart_failure_drops_follow_up_time(shared_data: Path) -> None:
    table = load_heart_failure(shared_data)
    assert table.features.shape == (299, 11)
    assert "time" not in table.schema.names
    assert table.labels.sum() == 96


def test_out_of_range_value_names_the_field_and_unit() -> None:
    with pytest.raises(InputError, match=r"trestbps: 900 mmHg is outside the valid range"):
        HEART_DISEASE.record_to_row({"age": 60, "trestbps": 900})
    with pytest.raises(InputError, match=r"thal: 5 is not one of the codes"):
        HEART_DISEASE.record_to_row({"thal": 5})
    with pytest.raises(InputError, match=r"bmi: not a feature"):
        HEART_DISEASE.record_to_row({"bmi": 25})


def test_a_bad_site_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "processed.x.data"
    bad.write_text("63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n63,1,1,145,999,1,2,150,0,2.3,3,0,6,0\n")
    with pytest.raises(InputError, match=r"processed.x.data: line 2, chol"):
        read_heart_disease_site(bad)
