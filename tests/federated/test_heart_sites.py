"""The four UCI hospitals as sites: real counts, missing values, clear errors before round 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medverse.federated.heart_data import FEATURES, SiteDataError, load_sites
from medverse.federated.heart_task import TrainSettings, evaluate, make_model, train_local


@pytest.fixture(scope="module")
def heart_root(shared_data: Path) -> Path:
    return shared_data / "uci_heart_disease"


def test_four_hospitals_with_held_out_parts(heart_root: Path) -> None:
    sites = load_sites(heart_root)
    assert [s.name for s in sites] == ["cleveland", "hungarian", "switzerland", "va"]
    assert [len(s.y_train) + len(s.y_test) for s in sites] == [303, 294, 123, 200]
    for site in sites:
        assert 0.25 < len(site.y_test) / (len(site.y_train) + len(site.y_test)) < 0.35
        assert 0 < site.y_test.mean() < 1  # both classes held out at every site


def test_switzerland_cholesterol_zero_is_missing(heart_root: Path) -> None:
    swiss = load_sites(heart_root)[2]
    chol_missing = np.concatenate([swiss.x_train, swiss.x_test])[:, len(FEATURES) + 4]
    assert chol_missing.mean() > 0.9  # nearly every Swiss chol is 0 = not measured


def test_wrong_labels_fail_naming_the_site(heart_root: Path, tmp_path: Path) -> None:
    for name in ("cleveland", "hungarian", "switzerland", "va"):
        shutil.copy(heart_root / f"processed.{name}.data", tmp_path)
    bad = tmp_path / "processed.hungarian.data"
    lines = bad.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",7"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SiteDataError, match="site hungarian: 1 rows have a diagnosis 'num'"):
        load_sites(tmp_path)


def test_wrong_columns_fail_naming_the_site(heart_root: Path, tmp_path: Path) -> None:
    shutil.copy(heart_root / "processed.cleveland.data", tmp_path)
    lines = (heart_root / "processed.hungarian.data").read_text().splitlines()
    (tmp_path / "processed.hungarian.data").write_text(
        "\n".join(line.rsplit(",", 1)[0] for line in lines)
    )
    with pytest.raises(SiteDataError, match="site hungarian: 13 columns, expected 14"):
        load_sites(tmp_path, n_sites=2)


def test_local_training_learns_on_cleveland(heart_root: Path, one_thread: None) -> None:
    site = load_sites(heart_root, n_sites=1)[0]
    model = make_model(0)
    before = evaluate(model, site.x_test, site.y_test)
    train_local(model, site.x_train, site.y_train, TrainSettings(epochs=20), seed=0)
    after = evaluate(model, site.x_test, site.y_test)
    assert after["auroc"] > 0.8
    assert after["loss"] < before["loss"]
