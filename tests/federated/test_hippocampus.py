"""Federated hippocampus: scanner changes, site dealing and checks, and short real-data runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medverse.cli.main import main
from medverse.federated.heart_data import SiteDataError
from medverse.federated.hippo_data import (
    HippoSite,
    SiteSplit,
    check_site,
    load_federation,
    site_case_counts,
)
from medverse.federated.hippo_run import run_federated
from medverse.federated.hippo_settings import HippoSettings, Uplink
from medverse.federated.hippo_task import flat_parameters, make_network, validation_dice
from medverse.federated.scanner import (
    apply_bias_field,
    apply_gamma,
    apply_noise,
    apply_thick_slices,
)
from medverse.federated.topk import serialised_nbytes
from medverse.models.checkpoint import load_checkpoint
from medverse.preprocessing.msd import MsdCase, load_msd_dataset

HIPPO = "msd_task04_hippocampus"


def test_scanner_changes_keep_the_grid_and_change_the_image() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 100, size=(20, 24, 18)).astype(np.float32)
    for changed in (
        apply_gamma(image, 0.5),
        apply_bias_field(image, 0.8),
        apply_noise(image, 0.1, seed=1),
        apply_thick_slices(image, 3),
    ):
        assert changed.shape == image.shape and changed.dtype == np.float32
        assert not np.allclose(changed, image)
    gain = apply_bias_field(np.ones((20, 24, 18), np.float32), 0.8)
    assert gain.min() == pytest.approx(np.exp(-0.4), rel=1e-3)  # smooth, +-0.4 log-gain
    assert gain.max() == pytest.approx(np.exp(0.4), rel=1e-3)
    ramp = np.broadcast_to(np.arange(18, dtype=np.float32), (4, 4, 18)).copy()
    thick = apply_thick_slices(ramp, 3)
    assert thick[0, 0, 0] == pytest.approx(1.0)  # the mean of slices 0-2
    assert np.ptp(thick) < np.ptp(ramp)  # detail lost through-plane
    steps = np.diff(apply_thick_slices(np.eye(18, dtype=np.float32)[None] * 9, 3)[0], axis=-1)
    assert np.abs(steps).max() < 9  # an isolated slice is spread over its slab
    noisy = apply_noise(np.zeros((50, 50, 50), np.float32) + 10, 0.1, seed=2)
    assert np.std(noisy) == pytest.approx(1.0, rel=0.05)


def test_sites_iid_equal_and_by_scanner_unequal() -> None:
    assert site_case_counts(166, 4, SiteSplit.IID) == [42, 42, 41, 41]
    by_scanner = site_case_counts(166, 4, SiteSplit.BY_SCANNER)
    assert sum(by_scanner) == 166 and len(set(by_scanner)) == 4


def test_a_site_with_wrong_labels_fails_naming_the_site(shared_data: Path) -> None:
    case = load_msd_dataset(shared_data / HIPPO, max_cases=1).cases[0]
    bad_label = case.label.with_array(np.asarray(case.label.array) + 3)
    site = HippoSite("site2", [case, MsdCase(case.name, case.image, bad_label)])
    with pytest.raises(SiteDataError, match=r"site site2: case .* label values \[3, 4, 5\]"):
        check_site(site, {1: "Anterior", 2: "Posterior"})


def test_a_two_channel_case_stops_the_run_before_round_one_naming_the_file(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = shared_data / HIPPO
    doc = json.loads((source / "dataset.json").read_text())
    doc["training"] = doc["training"][:12]
    doc["numTraining"] = 12
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
        for entry in doc["training"]:
            name = Path(entry["image" if sub == "imagesTr" else "label"]).name
            shutil.copy(source / sub / name, tmp_path / sub / name)
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    bad = tmp_path / "imagesTr" / Path(doc["training"][5]["image"]).name
    image = nib.load(bad)
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), image.affine), bad)  # T1 + T2
    code = main(["fl", "simulate", "--task", "hippocampus", "--dataset", str(tmp_path),
                 "--rounds", "1", "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert bad.name in err and "Traceback" not in err
    assert not (tmp_path / "out" / "metrics.csv").exists()  # no round ran


def test_two_round_federated_hippocampus_by_scanner(shared_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    settings = HippoSettings(
        shared_data / HIPPO, tmp_path, split=SiteSplit.BY_SCANNER, rounds=2, local_steps=1,
        max_train=12, max_validation=2,
    )  # fmt: skip
    fed = load_federation(settings.data_root, 4, settings.split, 0, 12, 2)
    assert [s.num_examples for s in fed.sites] == [6, 3, 2, 1]
    result = run_federated(settings, "tiny", fed)
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["site"] for r in rows if r["round"] == "1"] == [
        "site0", "site1", "site2", "site3", "global",
    ]  # fmt: skip
    assert [r["round"] for r in rows if r["site"] == "global"] == ["0", "1", "2"]
    dense = serialised_nbytes([v.numpy() for v in make_network(fed.plan).state_dict().values()])
    assert all(int(r["uplink_bytes"]) >= dense for r in rows if r["site"] != "global")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    # The checkpoint is an ordinary medverse one, and it is the model scored last.
    loaded = load_checkpoint(tmp_path / "global_model.pt")
    dice = validation_dice(loaded.network, fed.validation, fed.plan)["dice"]
    assert dice == pytest.approx(result.dice, abs=1e-4)
    assert float(rows[-1]["dice"]) == pytest.approx(result.dice, abs=1e-4)


def test_cli_refuses_a_bad_hippocampus_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fl", "simulate", "--task", "hippocampus", "--dataset", str(tmp_path),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "dataset.json" in capsys.readouterr().err


@pytest.mark.slow
def test_topk_under_secagg_moves_only_the_shared_coordinates(
    shared_data: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    settings = HippoSettings(
        shared_data / HIPPO, tmp_path, rounds=2, local_steps=2, max_train=12, max_validation=2,
        uplink=Uplink.TOPK_SECAGG,
    )  # fmt: skip
    fed = load_federation(settings.data_root, 4, settings.split, 0, 12, 2)
    result = run_federated(settings, "topk", fed)
    start = flat_parameters(make_network(fed.plan).state_dict())
    end = flat_parameters(load_checkpoint(tmp_path / "global_model.pt").network.state_dict())
    moved = np.flatnonzero(np.abs(end - start) > 1e-9)
    k = round(0.01 * start.size)
    assert k < len(moved) <= 2 * k  # two rounds of one shared index set each
    assert np.abs(end - start).max() < 0.5  # unmasked: masks that did not cancel are huge
    dense = serialised_nbytes([v.numpy() for v in make_network(fed.plan).state_dict().values()])
    assert dense / result.uplink_bytes_per_site_round > 90  # masked values packed: 4 B each
