"""``train --spatial-parallel``: a step on 2 spatial processes equals the step on one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from medverse.cli.main import main
from medverse.models.checkpoint import load_checkpoint
from medverse.parallel.ddp import DistContext
from medverse.parallel.spatial.launch import run_ranks
from medverse.training.api import build_trainer
from medverse.training.config import TrainConfig
from medverse.training.history import read_metrics
from medverse.training.loop import plain_network
from medverse.training.setup import RunSetup, prepare_run
from tests.training.conftest import tiny_cli_flags, tiny_options

pytestmark = pytest.mark.dist

TOL = 1e-5
# 24 voxels along the split axis: 12 per process, 3 at the bottom of unet_small.
PATCH = (24, 16, 16)


def _one_step(setup: RunSetup) -> dict[str, Any]:
    """Build this process's trainer as `train` does and take its first optimiser step."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    ctx = DistContext(rank=rank, world_size=world)
    trainer = build_trainer(setup, _dataset(setup), ctx)
    trainer.on_epoch_start(1)
    batch = next(iter(trainer.parts.loader))
    loss = trainer.train_step(batch)["loss"]
    network = plain_network(trainer.parts.network)
    return {
        "image": batch["image"].clone(),
        "loss": float(loss),
        "grads": [p.grad.clone() for p in network.parameters() if p.grad is not None],
    }


def _dataset(setup: RunSetup) -> Any:
    from medverse.preprocessing.msd import load_msd_dataset

    return load_msd_dataset(setup.dataset_dir)


def test_one_step_on_two_spatial_processes_equals_one_process(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    options = tiny_options(patch_size=PATCH)
    one, _ = prepare_run(tiny_dataset, tmp_path / "one", TrainConfig(**options))
    split, _ = prepare_run(
        tiny_dataset,
        tmp_path / "two",
        TrainConfig(**options, processes=2, spatial_parallel=2),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs: float32 kernels round alike
    try:
        expected = _one_step(one)
    finally:
        torch.set_num_threads(threads)
    results = run_ranks(_one_step, 2, (split,), timeout_s=300)
    for rank, got in enumerate(results):
        assert torch.equal(got["image"], expected["image"]), f"rank {rank} drew another batch"
        loss_diff = abs(got["loss"] - expected["loss"])
        grad_diff = max(
            (a - b).abs().max().item() for a, b in zip(got["grads"], expected["grads"], strict=True)
        )
        print(f"rank {rank}: |loss diff| {loss_diff:.2e}, max |grad diff| {grad_diff:.2e}")
        assert len(got["grads"]) == len(expected["grads"])
        assert loss_diff <= TOL and grad_diff <= TOL


@pytest.mark.slow
def test_the_command_trains_on_two_spatial_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = tiny_cli_flags(patch_size=PATCH)
    assert (
        main(["train", str(tiny_dataset), "--out", str(out), *flags, "--spatial-parallel", "2"])
        == 0
    )
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert 0.0 <= float(rows[-1]["val_dice"]) <= 1.0
    model = load_checkpoint(out / "checkpoint_last.pt")  # loads into the unsplit network
    assert model.preset == "unet_small"
