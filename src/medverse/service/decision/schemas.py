"""The decision API's bodies: a patient's features in, an explained decision and cards out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MODEL_PATTERN = r"^[a-z0-9_]{1,64}$"


class DecisionCreate(BaseModel):
    """One patient's findings, in the units of the model card (null or absent = not recorded)."""

    model_config = ConfigDict(extra="forbid")

    features: dict[str, float | None] = Field(
        max_length=64,
        examples=[{"age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": None, "thalach": 120}],
    )


class FeatureContributionPublic(BaseModel):
    """How much one feature moved the chosen expert's logit (integrated gradients)."""

    name: str
    label: str
    value: float | None
    unit: str
    attribution: float


class DecisionPublic(BaseModel):
    """The explained, calibrated decision for one patient."""

    model: str
    task: str
    risk: float = Field(description="the network's own probability, before calibration")
    probability: float = Field(description="calibrated probability (training sites only)")
    expert: str = Field(description="the expert with the highest gate weight")
    gate_weights: dict[str, float]
    experts_used: dict[str, float] = Field(description="top-k experts and their weights")
    top_features: list[FeatureContributionPublic]
    missing: list[str] = Field(description="features not recorded: learned defaults used")


class FeaturePublic(BaseModel):
    """An input feature: its unit and the range the API accepts."""

    name: str
    label: str
    unit: str
    low: float
    high: float
    codes: list[int] = Field(description="allowed codes of a categorical or binary feature")
    zero_means_missing: bool


class DecisionModelPublic(BaseModel):
    """A decision model's card."""

    name: str
    title: str
    target: str
    training_sites: list[str]
    training_patients: int
    training_prevalence: float
    out_of_fold_auroc: float
    calibration: str
    experts: dict[str, str]
    features: list[FeaturePublic]
    intended_use: str
