"""Many studies at once: read-ahead thread, windows batched across studies, per-study outputs."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.core.volume import Volume
from medverse.inference.api import segment_folder
from medverse.inference.batch import find_studies, read_ahead, study_name
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.models.checkpoint import load_checkpoint
from tests.conftest import HIPPOCAMPUS
from tests.inference.helpers import hippo_plan, untrained_checkpoint

CASES = ["hippocampus_001", "hippocampus_003", "hippocampus_004"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_checkpoint(hippo_plan(), tmp_path_factory.mktemp("model") / "u.pt")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real MR studies of different shapes."""
    root = tmp_path_factory.mktemp("studies")
    for case in CASES:
        shutil.copyfile(HIPPOCAMPUS / "imagesTr" / f"{case}.nii.gz", root / f"{case}.nii.gz")
    return root


def test_predict_many_equals_one_at_a_time(checkpoint: Path, folder: Path) -> None:
    predictor = Predictor(load_checkpoint(checkpoint), device="cpu", sw_batch_size=3)
    volumes = [(p.name, read_nifti(p)) for p in find_studies(folder)]
    assert len({v.shape for _, v in volumes}) == 3
    together = dict(predictor.predict_many(volumes))
    assert list(together) == [name for name, _ in volumes]
    for name, volume in volumes:
        alone = predictor.predict(volume)
        # Batched windows may take other float kernels than single ones (oneDNN picks by batch
        # size and thread state), so near-tied voxels of this untrained model can flip.
        agree = float(np.mean(together[name].array == alone.array))
        assert agree >= 0.999, f"{name}: batched and single predictions agree on {agree:.4%}"
        assert np.array_equal(together[name].affine, volume.affine)


def test_reading_runs_ahead_in_a_background_thread(folder: Path) -> None:
    started: list[str] = []
    second_started = threading.Event()

    def read(path: Path) -> Volume:
        started.append(threading.current_thread().name)
        if len(started) == 2:
            second_started.set()
        return read_nifti(path)

    reader = read_ahead(find_studies(folder), read)
    first_path, first = next(reader)
    assert isinstance(first, Volume) and first_path.name == f"{CASES[0]}.nii.gz"
    # while the consumer still holds study 1, study 2 is already being read
    assert second_started.wait(timeout=30)
    assert all(name.startswith("medverse-read") for name in started)
    assert [p.name for p, _ in reader] == [f"{c}.nii.gz" for c in CASES[1:]]


def test_segment_folder_writes_each_study_and_reports_a_broken_one(
    checkpoint: Path, folder: Path, tmp_path: Path
) -> None:
    studies = tmp_path / "in"
    shutil.copytree(folder, studies)
    (studies / "broken.nii.gz").write_bytes(b"not a nifti file")
    seen: list[str] = []
    outcomes = segment_folder(
        studies,
        model_path=checkpoint,
        out_dir=tmp_path / "out",
        device="cpu",
        labels_only=True,
        on_done=lambda o: seen.append(study_name(o.source)),
    )
    assert [study_name(o.source) for o in outcomes] == sorted(["broken", *CASES])
    broken = outcomes[0]
    assert broken.error is not None and "broken.nii.gz" in broken.error
    assert broken.out_dir is None and not (tmp_path / "out" / "broken").exists()
    assert sorted(seen) == sorted(["broken", *CASES])
    for outcome in outcomes[1:]:
        assert outcome.error is None and outcome.out_dir is not None
        labels = read_nifti_labels(outcome.out_dir / "labels.nii.gz")
        image = read_nifti(outcome.source)
        assert labels.shape == image.shape and np.allclose(labels.affine, image.affine)


def test_a_folder_without_studies_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no studies found"):
        find_studies(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        find_studies(tmp_path / "notes.txt")
