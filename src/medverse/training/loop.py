"""The explicit training loop: a `Trainer` whose steps are named hooks a subclass can replace."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medverse.parallel.ddp import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    any_rank,
    unwrap_model,
)
from medverse.parallel.spatial import SpatialParallel
from medverse.training.checkpointing import (
    ResumeState,
    capture_rng,
    load_resume_state,
    restore_rng,
)
from medverse.training.config import TrainResult
from medverse.training.data import BackgroundLoader, EpochSampler, ValidationCase
from medverse.training.inferer import predict_on_plan_grid
from medverse.training.metrics import case_scores, mean_dice, score_totals, totals_to_means
from medverse.training.precision import Precision, inference_precision
from medverse.training.recorder import (
    BEST_CHECKPOINT,
    CURVES_PNG,
    LAST_CHECKPOINT,
    METRICS_CSV,
    Recorder,
)
from medverse.training.setup import RunSetup

Logs = dict[str, Any]


@dataclass
class TrainerParts:
    """What a Trainer works with, built by `medverse.training.api.build_trainer`.

    Attributes:
        network: The network (DDP-wrapped when distributed), on the device.
        loss_fn: Loss on ``(logits, labels)``.
        optimizer: The optimiser.
        scheduler: Per-step LR schedule.
        precision: Autocast and backward step.
        loader: Training batches, already on the device.
        sampler: Chooses each epoch's samples.
        val_cases: This rank's share of the validation cases.
    """

    network: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    loader: BackgroundLoader
    sampler: EpochSampler
    val_cases: Sequence[ValidationCase]


class Trainer:
    """Train, validate, checkpoint; resume exactly.

    Hooks, in order: `on_train_start`, then per epoch `on_epoch_start`, `train_epoch` (calls
    `train_step` per batch), `validate` (every ``val_every`` epochs and after the last), and
    `on_epoch_end`; finally `on_train_end`. `fit` runs them.

    Args:
        setup: The decided run.
        ctx: This process's place in the job.
        parts: Network, optimiser, data and the rest.
        recorder: Writes files on the main process (does nothing elsewhere).
    """

    def __init__(
        self, setup: RunSetup, ctx: DistContext, parts: TrainerParts, recorder: Recorder
    ) -> None:
        self.setup, self.config, self.ctx = setup, setup.config, ctx
        self.parts, self.recorder = parts, recorder
        self.labels = sorted(int(v) for v in setup.plan.labels)
        # validation predicts as `medverse segment` does, whatever precision training uses
        self.validation_precision = inference_precision(parts.precision.device)
        self.epoch = 0
        self.best_dice: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.elapsed_before = 0.0

    # ---- hooks -------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Restore the last state when resuming; write the run's description."""
        if self.setup.resumed:
            self.load_state(load_resume_state(self.setup.run_dir))
        self.recorder.start(self.setup, self.history)
        plan, split = self.setup.plan, self.setup.split
        self.recorder.info(
            "training %s, patch %s, on %s x %s (%s): %s training / %s validation cases",
            plan.preset,
            "x".join(str(p) for p in plan.patch_size),
            self.ctx.world_size,
            self.ctx.device.type,
            self.parts.precision.name,
            len(split.train),
            len(split.validation),
        )

    def on_epoch_start(self, epoch: int) -> None:
        """Point the sampler at this epoch's samples and switch to training mode."""
        self.parts.sampler.set_epoch(epoch - 1)
        self.parts.network.train()

    def train_step(self, batch: dict[str, torch.Tensor]) -> Logs:
        """One optimiser step on one batch; returns ``{"loss": tensor}`` (no host sync)."""
        parts = self.parts
        parts.optimizer.zero_grad(set_to_none=True)
        with parts.precision.autocast():
            logits = parts.network(batch["image"])
        loss = parts.loss_fn(logits.float(), batch["label"])  # the loss in float32
        parts.precision.step(loss, parts.optimizer, parts.network)
        parts.scheduler.step()
        return {"loss": loss.detach().float()}

    def train_epoch(self, epoch: int) -> Logs | None:
        """Run the epoch's steps; None if the time limit stopped it part-way (it is dropped)."""
        lr = float(self.parts.optimizer.param_groups[0]["lr"])
        total = torch.zeros((), device=self.ctx.device)
        steps = 0
        desc = f"epoch {epoch}/{self.config.epochs}"
        bar = self.recorder.progress(self.parts.loader, self.config.iters_per_epoch, desc)
        for batch in bar:
            total += self.train_step(batch)["loss"]
            steps += 1
            if steps % 10 == 0:
                bar.postfix(loss=float(total) / steps)
            if steps < self.config.iters_per_epoch and self.time_is_up():
                return None
        return {"train_loss": all_reduce_mean(float(total) / max(steps, 1), self.ctx), "lr": lr}

    def validate(self) -> Logs:
        """Sliding-window Dice of the validation cases, all-reduced over ranks.

        Distances (HD95, surface Dice) are left to `medverse.training.evaluation.evaluate`:
        on CPUs they cost more than the prediction.
        """
        network = unwrap_model(self.parts.network)
        scores = []
        for case in self.parts.val_cases:
            pred = predict_on_plan_grid(
                network, case.image, self.setup.plan, self.validation_precision, self.config.overlap
            )
            scores.append(case_scores(pred, case.label, self.labels, case.spacing, distances=False))
        totals = all_reduce_sum(score_totals(scores, self.labels), self.ctx)
        means = totals_to_means(totals, self.labels)
        logs: Logs = {"val_dice": mean_dice(means)}
        for value in self.labels:
            logs[f"val_dice_{self.setup.plan.labels[value]}"] = means[value]["dice_mean"]
        return logs

    def on_epoch_end(self, epoch: int, logs: Logs, epoch_seconds: float) -> None:
        """Track the best Dice, then save state and metrics (the recorder writes on rank 0)."""
        dice = logs.get("val_dice")
        improved = isinstance(dice, float) and (self.best_dice is None or dice > self.best_dice)
        if improved:
            self.best_dice, self.best_epoch = dice, epoch
        elapsed = self.elapsed_before + time.monotonic() - self.started
        row = {"epoch": epoch, **logs, "epoch_seconds": epoch_seconds, "elapsed_seconds": elapsed}
        self.history.append(row)
        self.epoch = epoch
        rng = all_gather_objects(capture_rng(), self.ctx)  # collective: every rank's streams
        network = plain_network(self.parts.network)
        self.recorder.epoch_end(
            row=row, state=lambda: self.state(rng), network=network, improved=improved
        )

    def on_train_end(self, stopped: bool) -> TrainResult:
        """Report where the run stands."""
        if stopped:
            self.recorder.info("time limit reached: stopped cleanly after epoch %s", self.epoch)
        return self.result(stopped)

    # ---- driver ------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Run the hooks from the first unfinished epoch to ``config.epochs``."""
        self.on_train_start()
        stopped = False
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            tick = time.monotonic()
            self.on_epoch_start(epoch)
            logs = None if self.time_is_up() else self.train_epoch(epoch)
            if logs is None:
                stopped = True
                break
            if epoch % self.config.val_every == 0 or epoch == self.config.epochs:
                logs.update(self.validate())
            self.on_epoch_end(epoch, logs, time.monotonic() - tick)
        return self.on_train_end(stopped)

    def time_is_up(self) -> bool:
        """True (on every rank) once ``time_limit_min`` has passed in this invocation."""
        limit = self.config.time_limit_min
        if limit is None:
            return False
        return any_rank(time.monotonic() - self.started > limit * 60.0, self.ctx)

    # ---- state ---------------------------------------------------------------------------
    def state(self, rng: list[dict[str, Any]]) -> ResumeState:
        """The exact-resume state after the current epoch, with every rank's RNG states."""
        parts = self.parts
        network = plain_network(parts.network)
        return ResumeState(
            epoch=self.epoch,
            model={k: v.detach().cpu() for k, v in network.state_dict().items()},
            optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict(),
            scaler=parts.precision.state_dict(),
            rng=rng,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            history=list(self.history),
            world_size=self.ctx.world_size,
        )

    def load_state(self, state: ResumeState) -> None:
        """Continue from ``state``: weights, optimiser, schedule, scaler, RNGs, counters."""
        parts = self.parts
        plain_network(parts.network).load_state_dict(state.model)
        parts.optimizer.load_state_dict(state.optimizer)
        parts.scheduler.load_state_dict(state.scheduler)
        total_steps = self.config.epochs * self.config.iters_per_epoch
        parts.scheduler.total_iters = max(total_steps, 1)  # type: ignore[attr-defined]
        parts.precision.load_state_dict(state.scaler)
        if state.world_size == self.ctx.world_size:
            restore_rng(state.rng[self.ctx.rank])
        else:
            self.recorder.info(
                "resumed on %s processes (was %s): RNG streams re-seeded",
                self.ctx.world_size,
                state.world_size,
            )
        self.epoch, self.history = state.epoch, list(state.history)
        self.best_dice, self.best_epoch = state.best_dice, state.best_epoch
        self.elapsed_before = float(self.history[-1]["elapsed_seconds"]) if self.history else 0.0

    def result(self, stopped: bool) -> TrainResult:
        """The run's outcome as a `TrainResult`."""
        run_dir = self.setup.run_dir
        return TrainResult(
            run_dir=run_dir,
            last_checkpoint=run_dir / LAST_CHECKPOINT,
            best_checkpoint=run_dir / BEST_CHECKPOINT if self.best_epoch is not None else None,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            epochs_completed=self.epoch,
            stopped_by_time_limit=stopped,
            metrics_csv=run_dir / METRICS_CSV,
            curves_png=run_dir / CURVES_PNG,
        )


def plain_network(network: nn.Module) -> nn.Module:
    """The network whose weights are saved: inside DDP and a spatial split, if any.

    A spatially split network keeps its parameters under their own names, so its state
    loads into the unsplit network (checkpoints do not depend on the split).
    """
    inner = unwrap_model(network)
    return inner.network if isinstance(inner, SpatialParallel) else inner
