"""Named dependencies, so a handler reads `def model_card(model: ModelDep)`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from api.model_store import ServedModel
from api.runtime import Runtime

API_KEY_HEADER = "X-API-Key"


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def serving(runtime: Runtime) -> ServedModel:
    """The loaded model, or 503 with the reason it is not loaded."""
    if runtime.model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"model not loaded: {runtime.reason}"
        )
    return runtime.model


async def get_model(runtime: RuntimeDep) -> ServedModel:
    return serving(runtime)


ModelDep = Annotated[ServedModel, Depends(get_model)]


def authorise(request: Request) -> None:
    """When an API key is configured, the prediction routes need it; compared in constant time.

    A plain function the routes call, not a FastAPI dependency: on /predict a dependency with a
    Header parameter cost more than the model itself.
    """
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    given = request.headers.get(API_KEY_HEADER)
    if given is None or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing or wrong {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "API-Key"},
        )
