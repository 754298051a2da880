"""Exact resume: a run killed with SIGKILL mid-training, then resumed, equals an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medverse.training.api import train
from medverse.training.checkpointing import load_resume_state
from medverse.training.config import TrainConfig
from medverse.training.history import read_metrics
from tests.training.conftest import tiny_cli_flags, tiny_options

EPOCHS = 3
OPTIONS = tiny_options(epochs=EPOCHS)


def _epochs_in_csv(path: Path) -> list[int]:
    if not path.is_file():
        return []
    return [int(row["epoch"]) for row in read_metrics(path)]


def _kill_after_first_epoch(dataset: Path, run_dir: Path) -> list[int]:
    """Start `medverse train` in a subprocess; SIGKILL it once epoch 1 is in the CSV."""
    flags = tiny_cli_flags(epochs=EPOCHS)
    command = [sys.executable, "-m", "medverse", "train", str(dataset), "--out", str(run_dir)]
    process = subprocess.Popen(
        [*command, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600  # a loaded 2-core machine is slow, never this slow
    try:
        while not _epochs_in_csv(run_dir / "metrics.csv"):
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "")
            if time.monotonic() > deadline:
                raise AssertionError("epoch 1 never finished")
            time.sleep(0.02)
        seen = _epochs_in_csv(run_dir / "metrics.csv")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return seen


def _train_in_a_fresh_process(dataset: Path, run_dir: Path, *extra: str) -> None:
    """Run `medverse train` as a user does: its own process, with its own float state."""
    flags = tiny_cli_flags(epochs=EPOCHS)
    command = [sys.executable, "-m", "medverse", "train", str(dataset), "--out", str(run_dir)]
    done = subprocess.run([*command, *flags, *extra], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()


# Both runs go through the CLI in fresh processes: a run resumed inside a long-lived process
# (pytest after hundreds of tests) may pick other float kernels than the fresh process that ran
# epoch 1, which is not what a user who types `--resume` gets.
def test_a_killed_run_resumes_exactly(tiny_dataset: Path, tmp_path: Path) -> None:
    seen = _kill_after_first_epoch(tiny_dataset, tmp_path / "broken")
    assert seen and seen[-1] < EPOCHS, "the run was not interrupted"
    _train_in_a_fresh_process(tiny_dataset, tmp_path / "broken", "--resume")
    _train_in_a_fresh_process(tiny_dataset, tmp_path / "unbroken")
    resumed = load_resume_state(tmp_path / "broken")
    unbroken = load_resume_state(tmp_path / "unbroken")
    resumed_csv = tmp_path / "broken" / "metrics.csv"
    unbroken_csv = tmp_path / "unbroken" / "metrics.csv"

    assert _epochs_in_csv(resumed_csv) == [1, 2, 3]
    assert resumed.epoch == unbroken.epoch == EPOCHS
    for name, tensor in unbroken.model.items():
        assert torch.equal(resumed.model[name], tensor), name  # bitwise
    assert resumed.best_dice == unbroken.best_dice
    losses = [row["train_loss"] for row in read_metrics(resumed_csv)]
    assert losses == [row["train_loss"] for row in read_metrics(unbroken_csv)]


@pytest.mark.parametrize("epochs_done", [1])
def test_the_resume_state_holds_every_rng_and_the_schedule(
    tiny_dataset: Path, tmp_path: Path, epochs_done: int
) -> None:
    result = train(tiny_dataset, tmp_path / "r", TrainConfig(**tiny_options(epochs=epochs_done)))
    state = load_resume_state(result.run_dir)
    assert state.epoch == epochs_done and len(state.history) == epochs_done
    assert set(state.rng[0]) == {"python", "numpy", "torch", "cuda"}
    assert state.scheduler["last_epoch"] == epochs_done * 3
    assert state.optimizer["state"], "optimiser moments saved"
