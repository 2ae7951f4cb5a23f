"""The service's own endpoints: health, the model card, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.dependencies import ModelDep, RuntimeDep
from api.runtime import describe
from api.schemas import Health, ReloadResult

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(runtime: RuntimeDep) -> JSONResponse:
    """200 when a verified model is loaded; 503 with the reason otherwise."""
    model = runtime.model
    failed = runtime.failed_reload
    body = Health(
        status="ok" if model else "unavailable",
        model_loaded=model is not None,
        model_version=model.version if model else None,
        reason=None if model else runtime.reason,
        failed_reload=ReloadResult(**describe(failed)) if failed else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if model else 503)


@router.get("/model")
async def model_card(model: ModelDep) -> dict[str, Any]:
    """The model card: version, artifact hash, feature contract, metrics, library versions."""
    return model.card


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    body, media_type = runtime.metrics.exposition()
    return Response(body, media_type=media_type)
