"""Feature schemas of the decision tasks: units, valid ranges, missing codes and expert views."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from medverse.core.errors import ConfigError, InputError


class FeatureValueError(InputError):
    """One feature's value cannot be used; the message starts with the feature's name.

    Args:
        field: The feature's name.
        problem: What is wrong with the value.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.reason = problem
        super().__init__(f"{field}: {problem}")


class FeatureKind(StrEnum):
    """How a feature's values are read."""

    CONTINUOUS = "continuous"
    BINARY = "binary"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Feature:
    """One input feature.

    Attributes:
        name: Column name, as in the data and the API.
        label: Words a clinician reads.
        kind: Continuous, binary (0/1) or categorical (one of ``levels``).
        unit: Unit of the value ("" when unitless).
        low: Smallest valid value (inclusive).
        high: Largest valid value (inclusive).
        levels: Allowed codes of a categorical feature.
        zero_is_missing: The source data writes 0 for "not measured" (e.g. cholesterol at
            the Swiss sites), so a 0 is read as missing, never as a measurement.
    """

    name: str
    label: str
    kind: FeatureKind
    unit: str
    low: float
    high: float
    levels: tuple[int, ...] = ()
    zero_is_missing: bool = False

    def check(self, value: float | None) -> float:
        """Return ``value`` as a float (NaN when missing) or raise naming this feature.

        Raises:
            FeatureValueError: If the value is outside ``[low, high]`` or not an allowed code.
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        number = float(value)
        if self.zero_is_missing and number == 0.0:
            return math.nan
        if not self.low <= number <= self.high:
            unit = f" {self.unit}" if self.unit else ""
            raise FeatureValueError(
                self.name,
                f"{number:g}{unit} is outside the valid range {self.low:g}-{self.high:g}{unit}",
            )
        if self.levels and number not in self.levels:
            raise FeatureValueError(
                self.name, f"{number:g} is not one of the codes {list(self.levels)}"
            )
        return number


@dataclass(frozen=True)
class ExpertView:
    """An expert and the features it reads (its specialty).

    Attributes:
        name: Short name shown as the chosen expert.
        description: What the expert looks at, in words.
        features: Names of the features it reads (all of them for a generalist).
    """

    name: str
    description: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class TaskSchema:
    """A decision task: its features, target and experts.

    Attributes:
        name: Task name (also the default model name).
        title: What the model predicts.
        target: What a positive label means.
        features: The input features, in column order.
        experts: The expert views the gate chooses from.
        sites: Hospitals the data comes from.
    """

    name: str
    title: str
    target: str
    features: tuple[Feature, ...]
    experts: tuple[ExpertView, ...]
    sites: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        known = {f.name for f in self.features}
        for view in self.experts:
            unknown = set(view.features) - known
            if unknown:
                raise ConfigError(f"expert {view.name} reads unknown features {sorted(unknown)}")

    @property
    def names(self) -> list[str]:
        """Feature names in column order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        """Return the feature called ``name``."""
        for item in self.features:
            if item.name == name:
                return item
        raise InputError(f"{name}: not a feature of {self.name} (expected one of {self.names})")

    def record_to_row(self, record: Mapping[str, float | None]) -> list[float]:
        """Validate one patient's values and return them in column order (NaN = missing).

        Raises:
            FeatureValueError: Naming the first unknown field or out-of-range value.
        """
        unknown = sorted(set(record) - set(self.names))
        if unknown:
            raise FeatureValueError(unknown[0], f"not a feature of {self.name}")
        return [f.check(record.get(f.name)) for f in self.features]


_C, _B, _K = FeatureKind.CONTINUOUS, FeatureKind.BINARY, FeatureKind.CATEGORICAL

HEART_DISEASE = TaskSchema(
    name="heart_disease",
    title="Coronary artery disease (angiographic narrowing > 50 %)",
    target="num > 0: at least one major vessel narrowed by more than 50 %",
    features=(
        Feature("age", "Age", _C, "years", 18, 110),
        Feature("sex", "Sex (1 = male)", _B, "", 0, 1, (0, 1)),
        Feature("cp", "Chest pain type (1 typical, 2 atypical, 3 non-anginal, 4 none)", _K,
                "", 1, 4, (1, 2, 3, 4)),
        Feature("trestbps", "Resting systolic blood pressure", _C, "mmHg", 50, 260,
                zero_is_missing=True),
        Feature("chol", "Serum cholesterol", _C, "mg/dl", 50, 700, zero_is_missing=True),
        Feature("fbs", "Fasting blood sugar > 120 mg/dl", _B, "", 0, 1, (0, 1)),
        Feature("restecg", "Resting ECG (0 normal, 1 ST-T abnormality, 2 LV hypertrophy)", _K,
                "", 0, 2, (0, 1, 2)),
        Feature("thalach", "Maximum heart rate on exercise", _C, "bpm", 40, 250),
        Feature("exang", "Exercise-induced angina", _B, "", 0, 1, (0, 1)),
        Feature("oldpeak", "ST depression on exercise vs rest", _C, "mm", -5, 10),
        Feature("slope", "Slope of peak exercise ST segment (1 up, 2 flat, 3 down)", _K,
                "", 1, 3, (1, 2, 3)),
        Feature("ca", "Major vessels coloured by fluoroscopy", _C, "vessels", 0, 3),
        Feature("thal", "Thallium scan (3 normal, 6 fixed, 7 reversible defect)", _K,
                "", 3, 7, (3, 6, 7)),
    ),
    experts=(
        ExpertView("history", "symptoms and risk factors",
                   ("age", "sex", "cp", "trestbps", "chol", "fbs")),
        ExpertView("exercise_ecg", "resting and exercise ECG",
                   ("age", "sex", "restecg", "thalach", "exang", "oldpeak", "slope")),
        ExpertView("imaging", "fluoroscopy and thallium perfusion imaging",
                   ("age", "sex", "cp", "ca", "thal")),
        ExpertView("generalist", "all findings",
                   ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach",
                    "exang", "oldpeak", "slope", "ca", "thal")),
    ),
    sites=("cleveland", "hungarian", "switzerland", "va"),
)  # fmt: skip

HEART_FAILURE = TaskSchema(
    name="heart_failure",
    title="Death during follow-up of heart-failure patients",
    target="DEATH_EVENT = 1 (died during the follow-up period)",
    features=(
        Feature("age", "Age", _C, "years", 18, 110),
        Feature("anaemia", "Anaemia", _B, "", 0, 1, (0, 1)),
        Feature("creatinine_phosphokinase", "CPK enzyme in blood", _C, "mcg/L", 1, 10000),
        Feature("diabetes", "Diabetes", _B, "", 0, 1, (0, 1)),
        Feature("ejection_fraction", "Left-ventricular ejection fraction", _C, "%", 5, 90),
        Feature("high_blood_pressure", "Hypertension", _B, "", 0, 1, (0, 1)),
        Feature("platelets", "Platelets", _C, "kiloplatelets/mL", 10000, 1000000),
        Feature("serum_creatinine", "Serum creatinine", _C, "mg/dL", 0.1, 15),
        Feature("serum_sodium", "Serum sodium", _C, "mEq/L", 100, 160),
        Feature("sex", "Sex (1 = man)", _B, "", 0, 1, (0, 1)),
        Feature("smoking", "Smoking", _B, "", 0, 1, (0, 1)),
    ),
    experts=(
        ExpertView("history", "demographics and comorbidities",
                   ("age", "sex", "anaemia", "diabetes", "high_blood_pressure", "smoking")),
        ExpertView("laboratory", "blood tests",
                   ("age", "creatinine_phosphokinase", "platelets", "serum_creatinine",
                    "serum_sodium")),
        ExpertView("cardiac_function", "pump function and kidney",
                   ("age", "ejection_fraction", "serum_creatinine", "serum_sodium")),
        ExpertView("generalist", "all findings",
                   ("age", "anaemia", "creatinine_phosphokinase", "diabetes",
                    "ejection_fraction", "high_blood_pressure", "platelets",
                    "serum_creatinine", "serum_sodium", "sex", "smoking")),
    ),
    sites=("faisalabad",),
)  # fmt: skip

TASKS: dict[str, TaskSchema] = {t.name: t for t in (HEART_DISEASE, HEART_FAILURE)}


def task_schema(name: str) -> TaskSchema:
    """Return the schema of task ``name``.

    Raises:
        ConfigError: If there is no such task.
    """
    if name not in TASKS:
        raise ConfigError(f"unknown decision task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]
