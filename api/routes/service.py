"""The service's own endpoints: health, the model card, Prometheus metrics."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.dependencies import ModelDep, RuntimeDep
from api.runtime import describe
from api.schemas import Health, ReloadResult


def register(app: FastAPI) -> None:
    """Add the service routes to the app itself (see api.main for why not a router)."""
    tags: list[str | Enum] = ["service"]
    app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=tags)(health)
    app.get("/model", tags=tags)(model_card)
    app.get("/metrics", include_in_schema=False)(metrics)


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


async def model_card(model: ModelDep) -> dict[str, Any]:
    """The model card: version, artifact hash, feature contract, metrics, library versions."""
    return model.card


async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
