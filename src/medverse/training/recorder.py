"""Rank-0 side effects (files, logs, progress bars) behind one guard: `make_recorder`.

Every rank calls the same `Recorder` methods; only the main process gets a `RunRecorder`
that writes. The others get the base class, which does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from torch import nn

from medverse.core.logging import get_logger
from medverse.io.atomic import write_text_atomic
from medverse.models.checkpoint import save_checkpoint
from medverse.parallel.ddp import DistContext
from medverse.training.checkpointing import ResumeState, save_resume_state
from medverse.training.curves import plot_curves
from medverse.training.history import MetricsLog, Row, metric_columns
from medverse.training.setup import RunSetup
from medverse.training.split import save_split

T = TypeVar("T")
_log = get_logger(__name__)

LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
CONFIG_JSON = "config.json"
PLAN_JSON = "plan.json"


class Progress(Iterable[T]):
    """An iterable with a ``postfix`` slot; the silent version of a progress bar."""

    def __init__(self, iterable: Iterable[T]) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[T]:
        return iter(self.iterable)

    def postfix(self, **values: float) -> None:
        """Show ``values`` next to the bar (no-op here)."""


class _TqdmProgress(Progress[T]):
    def __init__(self, iterable: Iterable[T], total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
        super().__init__(self.bar)

    def __iter__(self) -> Iterator[T]:
        try:
            yield from self.bar
        finally:
            self.bar.close()

    def postfix(self, **values: float) -> None:
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)


class Recorder:
    """The recorder of a non-main rank: every method is a no-op."""

    def start(self, setup: RunSetup, history: Sequence[Row]) -> None:
        """Write the run's description (fresh run) or restore the CSV (resumed run)."""

    def progress(self, iterable: Iterable[T], total: int, desc: str) -> Progress[T]:
        """Wrap ``iterable`` in a progress bar."""
        return Progress(iterable)

    def epoch_end(
        self,
        *,
        row: Row,
        state: Callable[[], ResumeState],
        network: nn.Module,
        improved: bool,
    ) -> None:
        """Save checkpoints and the resume state (built by ``state()``), the row, the curves."""

    def info(self, message: str, *args: Any) -> None:
        """Log a line."""


class RunRecorder(Recorder):
    """The main process's recorder: writes everything in the run folder.

    Args:
        setup: The run being trained.
    """

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.run_dir = setup.run_dir
        self.names = [setup.plan.labels[v] for v in sorted(setup.plan.labels)]
        self.log = MetricsLog(self.run_dir / METRICS_CSV, metric_columns(self.names))

    def start(self, setup: RunSetup, history: Sequence[Row]) -> None:
        """Write config, plan and split (fresh run); rewrite the CSV from the state (resume)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not setup.resumed:
            write_text_atomic(
                self.run_dir / CONFIG_JSON, setup.config.model_dump_json(indent=1) + "\n"
            )
            setup.plan.save(self.run_dir / PLAN_JSON)
            save_split(setup.split, self.run_dir)
        self.log.rewrite(history)
        if history:
            self.info("resuming %s after epoch %s", self.run_dir, history[-1]["epoch"])

    def progress(self, iterable: Iterable[T], total: int, desc: str) -> Progress[T]:
        """A tqdm bar on stderr (silent when progress is off)."""
        if not self.setup.config.progress:
            return Progress(iterable)
        return _TqdmProgress(iterable, total, desc)

    def _save_model(self, name: str, network: nn.Module, row: Row) -> None:
        plan = self.setup.plan
        extra = {
            "epoch": row["epoch"],
            "val_dice": row.get("val_dice"),
            "fold": self.setup.split.fold,
        }
        save_checkpoint(
            self.run_dir / name, network, plan, preset=plan.preset, labels=plan.labels, extra=extra
        )

    def epoch_end(
        self,
        *,
        row: Row,
        state: Callable[[], ResumeState],
        network: nn.Module,
        improved: bool,
    ) -> None:
        """Best (if improved), last, resume state, then the CSV row and the curves."""
        resume = state()
        if improved:
            self._save_model(BEST_CHECKPOINT, network, row)
        self._save_model(LAST_CHECKPOINT, network, row)
        save_resume_state(resume, self.run_dir)
        self.log.append(row)
        plot_curves(resume.history, self.run_dir / CURVES_PNG, self.names)
        dice = row.get("val_dice")
        self.info(
            "epoch %s: loss %.4f%s%s",
            row["epoch"],
            row["train_loss"],
            f", validation Dice {dice:.4f}" if isinstance(dice, float) else "",
            " (best)" if improved else "",
        )

    def info(self, message: str, *args: Any) -> None:
        """Log a line through the medverse logger."""
        _log.info(message, *args)


def make_recorder(ctx: DistContext, setup: RunSetup) -> Recorder:
    """The one rank-0 guard: the main process writes, every other rank records nothing."""
    return RunRecorder(setup) if ctx.is_main else Recorder()
