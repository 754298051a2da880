"""One patient in, a calibrated risk out, with the gate's choice and the features behind it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from medverse.decision.calibration import sigmoid
from medverse.decision.model_file import DecisionModel


@dataclass(frozen=True)
class FeatureContribution:
    """How much one feature moved the chosen expert's logit away from the learned default.

    Attributes:
        name: Feature name.
        label: Words for it.
        value: The patient's value (None when missing).
        unit: Its unit.
        attribution: Integrated-gradients attribution in logit units (positive = more risk).
    """

    name: str
    label: str
    value: float | None
    unit: str
    attribution: float


@dataclass(frozen=True)
class Decision:
    """The answer for one patient.

    Attributes:
        model: Model name.
        task: Task the model answers (its schema's name).
        risk: The network's own probability (before calibration).
        probability: Calibrated probability (Platt scaling from the training sites).
        expert: The expert with the highest gate weight.
        gate_weights: Gate probability of every expert.
        experts_used: The top-k experts and their combination weights.
        top_features: Largest attributions for the chosen expert, largest first.
        missing: Features not recorded (replaced by the model's learned defaults).
    """

    model: str
    task: str
    risk: float
    probability: float
    expert: str
    gate_weights: dict[str, float]
    experts_used: dict[str, float]
    top_features: list[FeatureContribution]
    missing: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _expert_logit(model: DecisionModel, expert: int, mask: torch.Tensor) -> Any:
    network = model.network
    chosen = network.moe.experts[expert]

    def forward(filled: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([filled, mask.expand_as(filled)], dim=-1)
        result: torch.Tensor = chosen(tokens).squeeze(-1) + network.shared_logit(tokens)
        return result

    return forward


def attribute(model: DecisionModel, values: torch.Tensor, expert: int) -> np.ndarray:
    """Integrated gradients of ``expert``'s logit per schema feature, from the learned defaults.

    With a shared linear expert, its logit (which every patient gets) is added to the chosen
    expert's, so the attributions cover both.

    The path runs from the model's learned default for every column to the patient's values,
    so a missing feature (which *is* its default) gets exactly zero.
    """
    from captum.attr import IntegratedGradients

    mask = torch.isfinite(values).to(values.dtype)
    defaults = model.network.inputs.defaults.detach().unsqueeze(0)
    filled = torch.where(mask.bool(), values, defaults)
    gradients = IntegratedGradients(_expert_logit(model, expert, mask))
    columns = gradients.attribute(filled, baselines=defaults, n_steps=64)
    per_feature = np.zeros(len(model.schema.features))
    np.add.at(per_feature, model.encoder.column_feature, columns[0].detach().double().numpy())
    return per_feature


def top_features(
    model: DecisionModel, row: np.ndarray, attributions: np.ndarray, expert: int, top: int
) -> list[FeatureContribution]:
    """The largest attributions among the features ``expert`` reads and the patient has.

    The others contribute exactly 0 (not read, or sitting at the learned default). A shared
    linear expert reads every feature.
    """
    features = model.schema.features
    reads = set(model.schema.experts[expert].features)
    if model.network.shared is not None:
        reads = {f.name for f in features}
    order = [
        int(i)
        for i in np.argsort(-np.abs(attributions))
        if features[i].name in reads and not math.isnan(row[i])
    ][:top]
    return [
        FeatureContribution(
            features[i].name,
            features[i].label,
            float(row[i]),
            features[i].unit,
            round(float(attributions[i]), 6),
        )
        for i in order
    ]


def predict_record(
    model: DecisionModel, record: Mapping[str, float | None], top: int = 5
) -> Decision:
    """Validate one patient's values and return the explained, calibrated decision.

    Args:
        model: A loaded decision model.
        record: Feature name -> value in the schema's unit (None or absent = not recorded).
        top: How many features to list.

    Raises:
        FeatureValueError: Naming the first unknown or out-of-range field.
    """
    row = np.asarray([model.schema.record_to_row(record)], dtype=np.float64)
    values = torch.as_tensor(model.encoder.transform(row))
    with torch.no_grad():
        out = model.network(values)
    assert out.moe is not None  # the decision network is always the MoE
    routing = out.moe.routings[0]
    names = [view.name for view in model.schema.experts]
    chosen = int(routing.experts[0, 0])
    logit = float(out.logits[0])
    used = zip(routing.experts[0].tolist(), routing.weights[0].tolist())
    return Decision(
        model=model.name,
        task=model.schema.name,
        risk=float(sigmoid(np.asarray(logit))),
        probability=float(model.calibration(np.asarray([logit]))[0]),
        expert=names[chosen],
        gate_weights={n: round(float(p), 6) for n, p in zip(names, routing.probs[0])},
        experts_used={names[int(e)]: round(float(w), 6) for e, w in used},
        top_features=top_features(model, row[0], attribute(model, values, chosen), chosen, top),
        missing=[f.name for f, v in zip(model.schema.features, row[0]) if math.isnan(v)],
    )
