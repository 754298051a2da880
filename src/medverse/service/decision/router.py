"""``/api/decision``: decision-model cards and ``POST /{model}/predict`` (every call audited)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.exceptions import RequestValidationError

from medverse.core.errors import ModelError
from medverse.decision.model_file import DecisionModel, load_decision_model, resolve_model_path
from medverse.decision.predict import predict_record
from medverse.decision.schema import FeatureValueError
from medverse.service.audit.store import Outcome
from medverse.service.decision.schemas import (
    MODEL_PATTERN,
    DecisionCreate,
    DecisionModelPublic,
    DecisionPublic,
    FeaturePublic,
)
from medverse.service.deps import AuditDep, PrincipalDep, ServicesDep
from medverse.service.errors import NotFoundError
from medverse.service.schemas import ErrorPublic

router = APIRouter(prefix="/api/decision", tags=["decision"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404)
}
ModelName = Annotated[str, Path(pattern=MODEL_PATTERN, description="e.g. heart_disease")]


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int) -> DecisionModel:
    # Keyed on the file's mtime: replacing a model file takes effect on the next call.
    return load_decision_model(FilePath(path))


def _model(services: ServicesDep, name: str) -> DecisionModel:
    try:
        path = resolve_model_path(name, services.settings.models_dir)
    except ModelError as error:
        raise NotFoundError(error.one_line()) from None
    return _load(str(path), path.stat().st_mtime_ns)


def _card(model: DecisionModel) -> DecisionModelPublic:
    card = model.card
    features = [
        FeaturePublic(
            name=f.name, label=f.label, unit=f.unit, low=f.low, high=f.high,
            codes=list(f.levels), zero_means_missing=f.zero_is_missing,
        )
        for f in model.schema.features
    ]  # fmt: skip
    platt = model.calibration
    return DecisionModelPublic(
        name=model.name,
        title=card["title"],
        target=card["target"],
        training_sites=card["training_sites"],
        training_patients=card["training_patients"],
        training_prevalence=card["training_prevalence"],
        out_of_fold_auroc=card["out_of_fold_auroc"],
        calibration=f"Platt scaling (slope {platt.slope:.3f}, intercept {platt.intercept:.3f}) "
        "fitted on out-of-fold logits of the training sites",
        experts=card["experts"],
        features=features,
        intended_use=card["intended_use"],
    )


@router.get(
    "/models",
    response_model=list[DecisionModelPublic],
    responses={401: {"model": ErrorPublic}},
    summary="List decision models (cards)",
)
def list_models(services: ServicesDep, _principal: PrincipalDep) -> list[DecisionModelPublic]:
    """The cards of the decision models in ``<models_dir>/decision``."""
    folder = services.settings.models_dir / "decision"
    return [_card(_model(services, p.stem)) for p in sorted(folder.glob("*.pt"))]


@router.get(
    "/{model}", response_model=DecisionModelPublic, responses=_ERRORS, summary="A model's card"
)
def get_model(model: ModelName, services: ServicesDep, audit: AuditDep) -> DecisionModelPublic:
    """What the model predicts, its training sites, calibration, experts, and feature units."""
    with audit.action("decision.card", f"decision/{model}", record_ok=False):
        return _card(_model(services, model))


@router.post(
    "/{model}/predict",
    response_model=DecisionPublic,
    responses=_ERRORS,
    summary="Explained, calibrated risk for one patient",
)
def predict(
    model: ModelName, body: DecisionCreate, services: ServicesDep, audit: AuditDep
) -> DecisionPublic:
    """Risk, calibrated probability, chosen expert, gate weights and top features.

    A value outside its feature's valid range (see the card), an unknown feature or a code
    not in the list is refused with 422 whose ``loc`` ends with the field's name; every
    call, refused or not, is audited (no feature values are written to the audit).
    """
    refusal: FeatureValueError | None = None
    with audit.action("decision.predict", f"decision/{model}") as entry:
        loaded = _model(services, model)
        try:
            decision = predict_record(loaded, body.features)
            entry.detail = f"expert {decision.expert}, {len(decision.missing)} missing"
        except FeatureValueError as error:
            refusal, entry.record_ok = error, False
            audit.record(entry.action, entry.resource, Outcome.REJECTED, "HTTP 422")
    if refusal is not None:
        # FastAPI's own 422 shape, so the field is in ``loc`` as for any body error.
        loc = ("body", "features", refusal.field)
        raise RequestValidationError([{"loc": loc, "msg": refusal.reason, "type": "value_error"}])
    return DecisionPublic.model_validate(decision.to_dict())
