"""``/api/models``: the checkpoints a job may name."""

from __future__ import annotations

from fastapi import APIRouter

from medverse.service.deps import PrincipalDep, ServicesDep
from medverse.service.models.schemas import ModelPublic
from medverse.service.schemas import ErrorPublic

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get(
    "",
    response_model=list[ModelPublic],
    responses={401: {"model": ErrorPublic}},
    summary="List models",
)
def get_models(services: ServicesDep, _principal: PrincipalDep) -> list[ModelPublic]:
    """The readable checkpoints in the models folder (``<name>.pt``), by name."""
    return services.catalog.available()
