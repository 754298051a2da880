"""`train`: the public entry point; assembles a Trainer on one process, or launches several."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from medverse.core.logging import configure_logging, get_logger
from medverse.models.checkpoint import load_checkpoint
from medverse.models.factory import build_network
from medverse.models.losses import make_loss
from medverse.parallel.ddp import (
    DistContext,
    env_world_size,
    init_distributed,
    launch_local,
    shutdown,
    wrap_model,
)
from medverse.parallel.spatial.hybrid import hybrid_groups, hybrid_parallel
from medverse.preprocessing.msd import MsdDataset, load_msd_dataset
from medverse.training.checkpointing import load_resume_state
from medverse.training.config import CacheLocation, TrainConfig, TrainResult
from medverse.training.data import (
    EpochSampler,
    cache_training_cases,
    cache_validation_case,
    make_patch_loader,
    training_head,
)
from medverse.training.loop import Trainer, TrainerParts
from medverse.training.optim import make_optimizer, make_scheduler
from medverse.training.precision import guard_thin_convolutions, make_precision
from medverse.training.recorder import (
    BEST_CHECKPOINT,
    CURVES_PNG,
    LAST_CHECKPOINT,
    METRICS_CSV,
    make_recorder,
)
from medverse.training.setup import RunSetup, prepare_run

_log = get_logger(__name__)


def train(
    dataset_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None
) -> TrainResult:
    """Train a segmentation network on an MSD dataset; resume exactly with ``config.resume``.

    The dataset is validated first (every case read), so bad input fails before anything is
    written. With ``config.processes > 1`` (and outside torchrun) that many processes are
    started on this machine (NCCL on GPUs, gloo on the CPU); under torchrun each rank calls
    this function and joins the job its environment describes.

    Args:
        dataset_dir: MSD folder with ``dataset.json``, ``imagesTr`` and ``labelsTr``.
        out_dir: The run folder (checkpoints, metrics.csv, curves.png, plan, split, config).
        config: Training options (defaults when None).

    Returns:
        Where the run stands: checkpoints, best Dice, epochs done.

    Raises:
        InputError: Naming the case, for a missing file, unknown label values or an image
            and label of different shapes; or a run folder that cannot be resumed.
        ConfigError: For options that do not fit (run folder in use, bad fold, ...).
    """
    setup, dataset = prepare_run(dataset_dir, out_dir, config or TrainConfig())
    if setup.config.processes > 1 and env_world_size() == 1:
        del dataset
        launch_local(run_training, setup.config.processes, (setup,))
        return read_result(setup.run_dir, setup.config.epochs)
    return run_training(setup, dataset)


def run_training(setup: RunSetup, dataset: MsdDataset | None = None) -> TrainResult:
    """Train ``setup`` in this process (one rank of a job, or the whole job)."""
    if not logging.getLogger("medverse").handlers:
        configure_logging()
    ctx = init_distributed(setup.config.device)
    try:
        data = dataset if dataset is not None else load_msd_dataset(setup.dataset_dir)
        return build_trainer(setup, data, ctx).fit()
    finally:
        shutdown(ctx)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _num_workers(setup: RunSetup, ctx: DistContext) -> int:
    config = setup.config
    if ctx.device.type == "cuda" and config.cache == CacheLocation.DEVICE:
        return 0  # cases live on the GPU: crops and augmentation run there, in the thread
    if config.num_workers is not None:
        return config.num_workers
    if ctx.device.type != "cuda":
        return 0  # two-core CPUs: cores are better spent on the step itself
    return max(1, min(8, (os.cpu_count() or 2) // ctx.world_size - 1))


def build_trainer(setup: RunSetup, dataset: MsdDataset, ctx: DistContext) -> Trainer:
    """Assemble network, loss, optimiser, schedule, precision and data for this rank."""
    config, plan = setup.config, setup.plan
    torch.backends.cudnn.benchmark = not config.deterministic
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(config.seed)  # same initial weights on every rank
    network = build_network(plan.preset, 1, plan.num_classes)
    if config.init_weights is not None and not setup.resumed:
        network.load_state_dict(load_checkpoint(config.init_weights).network.state_dict())
        _log.info("starting from the weights of %s", config.init_weights)
    network = network.to(ctx.device)
    # Spatial groups: every process of a replica draws the same patches and validation cases.
    groups = hybrid_groups(config.spatial_parallel) if config.spatial_parallel > 1 else None
    replica, replicas = (groups.replica, groups.replicas) if groups else (ctx.rank, ctx.world_size)
    seed_everything(config.seed + 1000 * replica)
    by_name = {case.name: case for case in dataset.cases}
    cache_device = ctx.device if config.cache == CacheLocation.DEVICE else torch.device("cpu")
    head = training_head(plan, config.foreground_fraction)
    train_cases = [by_name[name] for name in setup.split.train]
    cached = cache_training_cases(train_cases, plan, head, cache_device)
    val_names = list(setup.split.validation)[replica::replicas]
    val_cases = [cache_validation_case(by_name[n], plan, cache_device) for n in val_names]
    sampler = EpochSampler(config.iters_per_epoch, config.batch_size, replica, replicas)
    loader = make_patch_loader(
        cached,
        plan,
        seed=config.seed,
        sampler=sampler,
        foreground_fraction=config.foreground_fraction,
        num_workers=_num_workers(setup, ctx),
        device=ctx.device,
    )
    optimizer = make_optimizer(network, config)
    precision = make_precision(ctx.device, config.amp, config.cpu_bf16)
    if precision.dtype == torch.bfloat16 and ctx.device.type == "cpu":
        guard_thin_convolutions(network)
    parts = TrainerParts(
        network=(
            wrap_model(network, ctx)
            if groups is None
            else hybrid_parallel(network, groups, axis=_longest(plan.patch_size))
        ),
        loss_fn=make_loss(),
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config.epochs * config.iters_per_epoch),
        precision=precision,
        loader=loader,
        sampler=sampler,
        val_cases=val_cases,
    )
    return Trainer(setup, ctx, parts, make_recorder(ctx, setup))


def _longest(patch: tuple[int, int, int]) -> int:
    """The patch axis split between spatial processes: the longest (most voxels per slab)."""
    return max(range(3), key=lambda a: patch[a])


def read_result(run_dir: str | Path, epochs: int | None = None) -> TrainResult:
    """Describe a run folder's state as a `TrainResult` (e.g. after a multi-process run).

    Args:
        run_dir: The run folder.
        epochs: Epochs the run was asked for (fewer done means the time limit stopped it).
    """
    run_dir = Path(run_dir)
    state = load_resume_state(run_dir)
    best = run_dir / BEST_CHECKPOINT
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=run_dir / LAST_CHECKPOINT,
        best_checkpoint=best if state.best_epoch is not None else None,
        best_dice=state.best_dice,
        best_epoch=state.best_epoch,
        epochs_completed=state.epoch,
        stopped_by_time_limit=epochs is not None and state.epoch < epochs,
        metrics_csv=run_dir / METRICS_CSV,
        curves_png=run_dir / CURVES_PNG,
    )
