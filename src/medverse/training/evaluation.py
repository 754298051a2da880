"""`evaluate`: score a checkpoint on MSD cases (Dice, HD95, surface Dice); CSV, JSON and a plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medverse.core.errors import InputError
from medverse.io.atomic import atomic_path, write_text_atomic
from medverse.models.checkpoint import load_checkpoint
from medverse.parallel.ddp import select_device
from medverse.preprocessing.msd import MsdEntry, load_msd_case, read_msd_index
from medverse.training.inferer import predict_volume
from medverse.training.metrics import (
    METRIC_NAMES,
    LabelScores,
    case_scores,
    mean_dice,
    score_totals,
    totals_to_means,
)
from medverse.training.precision import inference_precision

CASES_CSV = "metrics_per_case.csv"
SUMMARY_JSON = "summary.json"
BOXPLOT_PNG = "dice_boxplot.png"


@dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate` measured and wrote.

    Attributes:
        dice_mean: Mean over labels of the per-label mean Dice.
        per_label: Label name -> ``{"dice_mean", "hd95_mean", "surface_dice_mean"}``.
        cases: Names of the cases scored.
        cases_csv: One row per case and label.
        summary_json: The summary.
        boxplot_png: Dice (and HD95) per label as box plots.
    """

    dice_mean: float
    per_label: dict[str, dict[str, float | None]]
    cases: list[str]
    cases_csv: Path
    summary_json: Path
    boxplot_png: Path


def read_case_list(path: str | Path) -> list[str]:
    """Read case names from a JSON list, or from the ``validation`` list of a split.json.

    Raises:
        InputError: If the file is missing or holds neither.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("case list not found", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"case list is not valid JSON ({error})", path) from None
    names = doc.get("validation") if isinstance(doc, dict) else doc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError('expected a JSON list of case names or {"validation": [...]}', path)
    return names


def _dataset_root(data: Path) -> Path:
    if data.is_dir():
        return data
    if data.name != "dataset.json":
        raise InputError("expected an MSD dataset.json (or its folder)", data)
    return data.parent


def _select(
    entries: Sequence[MsdEntry], names: Sequence[str] | None, where: Path
) -> list[MsdEntry]:
    if names is None:
        return list(entries)
    by_name = {entry.name: entry for entry in entries}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise InputError(f"cases not listed in dataset.json: {', '.join(unknown[:5])}", where)
    if not names:
        raise InputError("the case list is empty", where)
    return [by_name[name] for name in names]


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    cases: Sequence[str] | str | Path | None = None,
    device: str = "auto",
    overlap: float = 0.5,
    mirror_tta: bool = False,
    tolerance_mm: float = 1.0,
) -> EvaluationResult:
    """Predict every selected case of an MSD dataset and score it against its labels.

    Prediction is the validation path of training (plan grid, Gaussian sliding window) plus
    probabilities resampled to the native grid; where the plan keeps the native spacing, a
    run's validation Dice is reproduced here on its validation cases.

    Args:
        checkpoint: A medverse checkpoint.
        data: The dataset.json (image paths relative to it) or its folder.
        out_dir: Where the CSV, summary.json and box plot go (written after all cases).
        cases: Case names, or a JSON file of them (a split.json uses its validation list);
            all cases when None.
        device: ``auto``, ``cpu`` or ``cuda``.
        overlap: Sliding-window overlap.
        mirror_tta: Average over the 8 axis mirrorings (as ``medverse segment --tta``;
            8x the compute).
        tolerance_mm: Surface Dice tolerance.

    Raises:
        InputError: For a bad dataset (naming the case) or unknown case names.
        ModelError: For an unreadable checkpoint.
    """
    data = Path(data)
    index = read_msd_index(_dataset_root(data))
    names = read_case_list(cases) if isinstance(cases, str | Path) else cases
    entries = _select(index.entries, names, Path(cases) if isinstance(cases, str | Path) else data)
    torch_device = select_device(device)
    model = load_checkpoint(checkpoint, map_location=torch_device)
    plan, precision = model.plan, inference_precision(torch_device)
    labels = sorted(int(v) for v in plan.labels)
    scored: list[tuple[str, dict[int, LabelScores]]] = []
    for entry in entries:
        case = load_msd_case(entry, index.labels)
        prediction = predict_volume(
            model.network, case.image, plan, precision, overlap, mirror=mirror_tta
        )
        scores = case_scores(
            prediction.array,
            case.label.array,
            labels,
            case.image.spacing,
            tolerance_mm=tolerance_mm,
        )
        scored.append((case.name, scores))
    means = totals_to_means(score_totals([s for _, s in scored], labels), labels)
    per_label = {plan.labels[v]: means[v] for v in labels}
    summary: dict[str, Any] = {
        "dice_mean": mean_dice(means),
        "per_label": per_label,
        "n_cases": len(scored),
        "cases": [name for name, _ in scored],
        "checkpoint": str(checkpoint),
        "dataset": str(data),
        "tolerance_mm": tolerance_mm,
        "overlap": overlap,
        "mirror_tta": mirror_tta,
    }
    return _write_outputs(Path(out_dir), summary, scored, plan.labels)


def _cases_csv(scored: Sequence[tuple[str, dict[int, LabelScores]]], names: dict[int, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "label_value", "label", *METRIC_NAMES])
    for case, scores in scored:
        for value, score in scores.items():
            cells = ["" if math.isnan(x) else f"{x:.6f}" for x in score.as_tuple()]
            writer.writerow([case, value, names[value], *cells])
    return buffer.getvalue()


def _write_outputs(
    out_dir: Path,
    summary: dict[str, Any],
    scored: Sequence[tuple[str, dict[int, LabelScores]]],
    names: dict[int, str],
) -> EvaluationResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    cases_csv = write_text_atomic(out_dir / CASES_CSV, _cases_csv(scored, names))
    summary_json = write_text_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    boxplot = plot_boxes(scored, names, out_dir / BOXPLOT_PNG)
    return EvaluationResult(
        dice_mean=float(summary["dice_mean"]),
        per_label=summary["per_label"],
        cases=list(summary["cases"]),
        cases_csv=cases_csv,
        summary_json=summary_json,
        boxplot_png=boxplot,
    )


def plot_boxes(
    scored: Sequence[tuple[str, dict[int, LabelScores]]], names: dict[int, str], path: Path
) -> Path:
    """Box plots of Dice and HD95 per label over the cases (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    values = sorted(names)
    figure = Figure(figsize=(4 + 1.2 * len(values), 3.6), dpi=100)
    dice_ax, hd_ax = figure.subplots(1, 2)
    dice = [[s[v].dice for _, s in scored] for v in values]
    hd95 = [[s[v].hd95 for _, s in scored if math.isfinite(s[v].hd95)] for v in values]
    labels = [names[v] for v in values]
    dice_ax.boxplot(dice, tick_labels=labels)
    dice_ax.set(title=f"Dice ({len(scored)} cases)", ylim=(0, 1.02))
    hd_ax.boxplot([h or [math.nan] for h in hd95], tick_labels=labels)
    hd_ax.set(title="HD95 (mm)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
