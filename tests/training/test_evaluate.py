from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.core.errors import InputError
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import load_checkpoint
from medverse.training.config import TrainResult
from medverse.training.evaluation import EvaluationResult, evaluate
from medverse.training.inferer import predict_volume
from medverse.training.precision import inference_precision
from medverse.training.split import load_split

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(
    tiny_run: TrainResult, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationResult:
    out = tmp_path_factory.mktemp("eval")
    return evaluate(
        tiny_run.last_checkpoint,
        tiny_dataset / "dataset.json",
        out,
        cases=tiny_run.run_dir / "split.json",
        overlap=0.0,
    )


def test_evaluate_writes_csv_summary_and_plot(
    report: EvaluationResult, tiny_run: TrainResult
) -> None:
    validation = list(load_split(tiny_run.run_dir / "split.json").validation)
    assert report.cases == validation

    summary = json.loads(report.summary_json.read_text())
    assert isinstance(summary["dice_mean"], float)
    assert set(summary["per_label"]) == {"Anterior", "Posterior"}
    for means in summary["per_label"].values():
        assert isinstance(means["dice_mean"], float) and 0.0 <= means["dice_mean"] <= 1.0
        assert isinstance(means["hd95_mean"], float) and means["hd95_mean"] >= 0.0
    labels = summary["per_label"].values()
    assert summary["dice_mean"] == pytest.approx(np.mean([m["dice_mean"] for m in labels]))

    with report.cases_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["label"]) for r in rows] == [
        (case, name) for case in validation for name in ("Anterior", "Posterior")
    ]
    dice = [float(r["dice"]) for r in rows if r["label"] == "Anterior"]
    assert summary["per_label"]["Anterior"]["dice_mean"] == pytest.approx(np.mean(dice), abs=1e-6)
    assert report.boxplot_png.read_bytes().startswith(PNG_MAGIC)


def test_validation_prediction_matches_the_inference_predictor(
    tiny_run: TrainResult, tiny_dataset: Path
) -> None:
    model = load_checkpoint(tiny_run.last_checkpoint)
    image = read_nifti(tiny_dataset / "imagesTr" / "hippocampus_001.nii.gz")
    ours = predict_volume(
        model.network, image, model.plan, inference_precision(torch.device("cpu")), 0.25
    )
    theirs = Predictor(model, device="cpu", overlap=0.25).predict(image)
    assert ours.shape == theirs.shape and np.array_equal(ours.affine, theirs.affine)
    assert np.array_equal(ours.array, theirs.array)


def test_mirrored_evaluation_predicts_as_segment_tta(
    tiny_run: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    model = load_checkpoint(tiny_run.last_checkpoint)
    image = read_nifti(tiny_dataset / "imagesTr" / "hippocampus_001.nii.gz")
    precision = inference_precision(torch.device("cpu"))
    ours = predict_volume(model.network, image, model.plan, precision, 0.25, mirror=True)
    theirs = Predictor(model, device="cpu", overlap=0.25, mirror_tta=True).predict(image)
    assert np.array_equal(ours.array, theirs.array)
    plain = predict_volume(model.network, image, model.plan, precision, 0.25)
    assert not np.array_equal(ours.array, plain.array)  # the flips do change the labels
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(["hippocampus_001"]))
    report = evaluate(
        tiny_run.last_checkpoint, tiny_dataset, tmp_path / "eval", cases=cases,
        device="cpu", overlap=0.25, mirror_tta=True,
    )  # fmt: skip
    assert json.loads(report.summary_json.read_text())["mirror_tta"] is True


def test_unknown_case_names_are_refused_before_predicting(
    tiny_run: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(["hippocampus_001", "hippocampus_999"]))
    with pytest.raises(InputError, match="hippocampus_999"):
        evaluate(tiny_run.last_checkpoint, tiny_dataset, tmp_path / "out", cases=cases)
    assert not (tmp_path / "out").exists()
