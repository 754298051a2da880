"""Learning curves (training loss, validation Dice, learning rate) as a PNG, via matplotlib Agg."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from medverse.io.atomic import atomic_path


def _series(history: Sequence[Mapping[str, object]], key: str) -> tuple[list[int], list[float]]:
    xs: list[int] = []
    ys: list[float] = []
    for row in history:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(float(value)):
            xs.append(int(row["epoch"]))  # type: ignore[call-overload]
            ys.append(float(value))
    return xs, ys


def plot_curves(
    history: Sequence[Mapping[str, object]], path: Path, label_names: Sequence[str] = ()
) -> Path:
    """Draw loss, validation Dice (mean and per label) and learning rate against epoch.

    Args:
        history: One mapping per epoch with ``epoch``, ``train_loss``, ``lr``, ``val_dice``
            and optionally ``val_dice_<label>``.
        path: The PNG to write (atomically).
        label_names: Labels whose Dice curves to draw.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 3.4), dpi=100)
    loss_ax, dice_ax, lr_ax = figure.subplots(1, 3)
    for ax in (loss_ax, dice_ax, lr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.plot(*_series(history, "train_loss"), marker=".", label="train loss")
    loss_ax.set(title="training loss (Dice + CE)", xlabel="epoch")
    dice_ax.plot(*_series(history, "val_dice"), marker="o", color="black", label="mean")
    for name in label_names:
        dice_ax.plot(*_series(history, f"val_dice_{name}"), marker=".", label=name)
    dice_ax.set(title="validation Dice", xlabel="epoch", ylim=(0, 1))
    dice_ax.legend(loc="lower right", fontsize="small")
    lr_ax.plot(*_series(history, "lr"), marker=".", color="gray")
    lr_ax.set(title="learning rate", xlabel="epoch")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)
