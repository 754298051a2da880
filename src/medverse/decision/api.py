"""Public functions of decision support: train a model file, decide for a patient, report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medverse.core.errors import ConfigError, InputError
from medverse.decision.calibration import PlattScaling
from medverse.decision.candidates import ModelKind, ModelSettings, build_moe, out_of_fold_logits
from medverse.decision.data import load_task
from medverse.decision.encoding import Encoder
from medverse.decision.evaluation import auroc
from medverse.decision.model_file import (
    DecisionModel,
    load_decision_model,
    resolve_model_path,
    save_decision_model,
)
from medverse.decision.moe import MoEClassifier, MoEConfig, parameter_count
from medverse.decision.predict import Decision, predict_record
from medverse.decision.schema import TaskSchema, task_schema
from medverse.decision.training import FitConfig, fit_network, plot_history
from medverse.io.atomic import write_text_atomic


def train_decision_model(
    task: str,
    data_root: Path,
    out: Path,
    train_sites: Sequence[str] | None = None,
    fit: FitConfig | None = None,
    moe: MoEConfig | None = None,
    folds: int = 5,
) -> DecisionModel:
    """Train the MoE of ``task`` on ``train_sites``, calibrate it, write it and its card.

    Calibration is Platt scaling on out-of-fold logits of the training patients, so no
    patient outside ``train_sites`` is ever seen.

    Args:
        task: ``heart_disease`` or ``heart_failure``.
        data_root: The shared data folder.
        out: Model file to write (``.pt``); the card goes beside it as ``.md`` and the
            final fit's loss curves as ``<stem>_curves.png``.
        train_sites: Sites to train on (all sites of the task when None).
        fit: Optimiser settings.
        moe: Network shape and routing.
        folds: Folds for the out-of-fold calibration logits.

    Raises:
        InputError: If the data is missing or a site is unknown.
    """
    fit, moe = fit or FitConfig(), moe or MoEConfig()
    table = load_task(task, data_root)
    sites = tuple(train_sites or table.schema.sites)
    train = table.select(sites)
    oof = out_of_fold_logits(ModelKind.MOE, train, ModelSettings(fit, moe), folds)
    encoder = Encoder.fit(train.schema, train.features)
    values = encoder.transform(train.features)
    network, history = fit_network(
        lambda: build_moe(encoder, moe), values, train.labels, fit, None, encoder.column_feature
    )
    assert isinstance(network, MoEClassifier)
    card = _card(table.schema, train.labels, sites, oof, network, train.missing_fraction())
    card["fit"], card["moe"] = dataclasses.asdict(fit), dataclasses.asdict(moe)
    model = DecisionModel(table.schema, encoder, network, PlattScaling.fit(oof, train.labels), card)
    save_decision_model(model, out)
    write_text_atomic(Path(out).with_suffix(".md"), model_card_markdown(model))
    plot_history(history, Path(out).with_name(f"{Path(out).stem}_curves.png"), schema_title(model))
    return model


def settings_from_results(path: Path) -> tuple[FitConfig, MoEConfig]:
    """The MoE's chosen settings in a ``bench_decision`` results JSON, for one network.

    The benchmark averages a seed ensemble; a model file holds one network, so ``ensemble``
    is set to 1 (seed 0).

    Raises:
        InputError: Naming the file if it is unreadable or has no chosen MoE settings.
    """
    try:
        chosen = json.loads(Path(path).read_text())["chosen_settings"][ModelKind.MOE]
        settings = ModelSettings.from_dict(chosen)
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as error:
        raise InputError(f"no chosen MoE settings ({error})", path) from error
    return dataclasses.replace(settings.fit, ensemble=1), settings.moe


def schema_title(model: DecisionModel) -> str:
    """Plot title: the model and its training sites."""
    return f"{model.name}: {', '.join(model.card['training_sites'])}"


def _card(
    schema: TaskSchema,
    labels: np.ndarray,
    sites: tuple[str, ...],
    oof: np.ndarray,
    network: MoEClassifier,
    missing: dict[str, float],
) -> dict[str, Any]:
    return {
        "name": schema.name,
        "title": schema.title,
        "target": schema.target,
        "training_sites": list(sites),
        "training_patients": len(labels),
        "training_prevalence": round(float(labels.mean()), 4),
        "out_of_fold_auroc": round(auroc(labels, oof), 4),
        "parameters": parameter_count(network),
        "experts": {v.name: v.description for v in schema.experts},
        "missing_at_training": missing,
        "features": [
            {"name": f.name, "label": f.label, "unit": f.unit, "low": f.low, "high": f.high}
            for f in schema.features
        ],
        "intended_use": "research decision support; not a medical device",
    }


def model_card_markdown(model: DecisionModel) -> str:
    """Return the model card as Markdown."""
    card = model.card
    lines = [
        f"# Model card: {model.name}",
        "",
        f"- Predicts: {card['title']} ({card['target']})",
        f"- Trained on: {', '.join(card['training_sites'])} ({card['training_patients']} "
        f"patients, prevalence {card['training_prevalence']:.2f})",
        f"- Out-of-fold AUROC on the training sites: {card['out_of_fold_auroc']:.3f}",
        f"- Calibration: Platt scaling on out-of-fold training logits "
        f"(slope {model.calibration.slope:.3f}, intercept {model.calibration.intercept:.3f})",
        f"- Network: {len(card['experts'])} specialty experts, top-{model.network.config.top_k} "
        f"gate on {model.network.config.gate_inputs} inputs"
        f"{', a shared linear expert' if model.network.config.shared_linear else ''}, "
        f"{card['parameters']} parameters",
        f"- Intended use: {card['intended_use']}",
        "",
        "| expert | reads |",
        "| --- | --- |",
        *(f"| {name} | {text} |" for name, text in card["experts"].items()),
        "",
        "| feature | unit | valid range | missing at training |",
        "| --- | --- | --- | --- |",
        *(
            f"| {f['name']} ({f['label']}) | {f['unit'] or '-'} | {f['low']:g}-{f['high']:g} | "
            f"{card['missing_at_training'].get(f['name'], 0.0):.1%} |"
            for f in card["features"]
        ),
    ]
    for note in card.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def decide(
    model: str | Path, record: Mapping[str, float | None], models_dir: Path = Path("models")
) -> Decision:
    """Load a decision model (a shipped name or a ``.pt`` path) and decide for one patient.

    Raises:
        ModelError: If the model cannot be found or read.
        InputError: Naming an unknown or out-of-range field.
    """
    return predict_record(load_decision_model(resolve_model_path(model, models_dir)), record)


def read_patient(path: Path) -> dict[str, float | None]:
    """Read one patient's values from a JSON object file.

    Raises:
        InputError: Naming the file if it is not a JSON object of numbers or nulls.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read patient JSON ({error})", path) from error
    if not isinstance(data, dict):
        raise InputError("patient JSON must be an object of feature: value", path)
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(f"{key}: {value!r} is not a number or null", path)
    return dict(data)


def decision_report_markdown(decision: Decision) -> str:
    """Return a one-patient report: probability, gate weights and the features behind it."""
    schema = task_schema(decision.task)
    lines = [
        f"# Decision support: {schema.title}",
        "",
        f"- Calibrated probability: {decision.probability:.1%} (model risk {decision.risk:.1%})",
        f"- Chosen expert: {decision.expert}",
        "- Gate weights: " + ", ".join(f"{k} {v:.2f}" for k, v in decision.gate_weights.items()),
        f"- Not recorded (learned defaults used): {', '.join(decision.missing) or 'none'}",
        "",
        f"Features that drove the {decision.expert} expert (integrated gradients, logit units):",
        "",
        "| feature | value | attribution |",
        "| --- | --- | --- |",
    ]
    for item in decision.top_features:
        value = "missing" if item.value is None else f"{item.value:g} {item.unit}".strip()
        lines.append(f"| {item.label} | {value} | {item.attribution:+.3f} |")
    return "\n".join(lines) + "\n"
