"""Training options (one validated object) and the result a training run returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OptimizerName(StrEnum):
    """Optimisers the trainer can build."""

    SGD = "sgd"
    ADAMW = "adamw"


class CacheLocation(StrEnum):
    """Where preprocessed cases are kept during training."""

    RAM = "ram"
    DEVICE = "device"


# Learning rates that worked: nnU-Net's SGD default, and AdamW on 2-core CPUs (see the notes).
DEFAULT_LR = {OptimizerName.SGD: 1e-2, OptimizerName.ADAMW: 3e-4}


class TrainConfig(BaseModel):
    """Everything a training run can be told; saved as ``config.json`` in the run folder.

    Attributes:
        preset: Model preset (registry name); None keeps the plan's preset.
        plan_path: Use this plan.json instead of planning from the dataset's fingerprint.
        patch_size: Override the plan's patch size.
        init_weights: Start from this medverse checkpoint's weights (fine-tuning); the run
            takes the checkpoint's plan, so its network and preprocessing fit the weights.
        epochs: Number of epochs.
        iters_per_epoch: Optimiser steps per epoch.
        batch_size: Patches per step and process.
        optimizer: ``sgd`` (Nesterov, momentum 0.99) or ``adamw``.
        lr: Initial learning rate; None picks the optimiser's default.
        weight_decay: Weight decay.
        val_every: Validate every N epochs (and always after the last).
        overlap: Sliding-window overlap for validation.
        seed: Seed of the split, sampling, augmentation and initial weights.
        fold: Validation fold.
        n_folds: Number of folds.
        foreground_fraction: Share of patches forced to contain foreground.
        time_limit_min: Stop cleanly after this many minutes (None: no limit).
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: Mixed precision on CUDA (bf16 when supported, else fp16 with a grad scaler).
        cpu_bf16: bf16 autocast when training on the CPU (CPUs with AVX512-BF16 or AMX only):
            several times faster steps, not bit-reproducible across processes.
        processes: Processes on this machine (one per GPU; gloo CPU processes for testing).
        spatial_parallel: Processes that split each patch between them along its longest
            axis (halo exchange, `medverse.parallel.spatial`), for patches too large for one
            device; ``processes / spatial_parallel`` replicas train data-parallel (DDP).
        num_workers: Data-loader worker processes (None: automatic).
        cache: Keep preprocessed cases in RAM or on the compute device.
        deterministic: Ask torch for deterministic kernels (slower on CUDA).
        resume: Continue the run in the output folder from its last state.
        progress: Show progress bars.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str | None = None
    plan_path: Path | None = None
    patch_size: tuple[int, int, int] | None = None
    init_weights: Path | None = None
    epochs: int = Field(default=100, ge=1)
    iters_per_epoch: int = Field(default=100, ge=1)
    batch_size: int = Field(default=2, ge=1)
    optimizer: OptimizerName = OptimizerName.ADAMW
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float = Field(default=3e-5, ge=0)
    val_every: int = Field(default=1, ge=1)
    overlap: float = Field(default=0.5, ge=0, lt=1)
    seed: int = 0
    fold: int = Field(default=0, ge=0)
    n_folds: int = Field(default=5, ge=2)
    foreground_fraction: float = Field(default=0.33, ge=0, le=1)
    time_limit_min: float | None = Field(default=None, gt=0)
    device: str = "auto"
    amp: bool = True
    cpu_bf16: bool = False
    processes: int = Field(default=1, ge=1)
    spatial_parallel: int = Field(default=1, ge=1)
    num_workers: int | None = Field(default=None, ge=0)
    cache: CacheLocation = CacheLocation.RAM
    deterministic: bool = False
    resume: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _spatial_groups_fit(self) -> TrainConfig:
        if self.processes % self.spatial_parallel:
            raise ValueError(
                f"processes ({self.processes}) must be a multiple of spatial_parallel "
                f"({self.spatial_parallel}): each replica is a group of spatial processes"
            )
        return self

    @property
    def learning_rate(self) -> float:
        """The initial learning rate (explicit, or the optimiser's default)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or time-limited) run left in its folder.

    Attributes:
        run_dir: The run folder.
        last_checkpoint: Model after the last completed epoch.
        best_checkpoint: Model with the best validation Dice (None if never validated).
        best_dice: Best validation mean Dice (None if never validated).
        best_epoch: Epoch of the best checkpoint (None if never validated).
        epochs_completed: Epochs finished, counting those of earlier runs when resumed.
        stopped_by_time_limit: True when ``time_limit_min`` ended the run early.
        metrics_csv: One row per epoch.
        curves_png: Learning curves.
    """

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_dice: float | None
    best_epoch: int | None
    epochs_completed: int
    stopped_by_time_limit: bool
    metrics_csv: Path
    curves_png: Path
