"""Named dependencies, so a handler reads `def model_card(model: ModelDep)`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from api.model_store import ServedModel
from api.runtime import Runtime, Serving

API_KEY_HEADER = "X-API-Key"


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def serving(runtime: Runtime) -> Serving:
    """The model serving now with its validators, or 503 with the reason none is loaded.

    Take it once per request: a reload swaps it as a whole.
    """
    current = runtime.serving
    if current is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"model not loaded: {runtime.reason}"
        )
    return current


async def get_model(runtime: RuntimeDep) -> ServedModel:
    return serving(runtime).model


ModelDep = Annotated[ServedModel, Depends(get_model)]


def authorise(request: Request) -> None:
    """When an API key is configured, the prediction routes need it.

    A plain function the routes call, not a FastAPI dependency: on /predict a dependency with a
    Header parameter cost more than the model itself.
    """
    expected = request.app.state.settings.api_key
    if expected is not None:
        require_key(request, API_KEY_HEADER, expected, scheme="API-Key")


def require_key(request: Request, header: str, expected: SecretStr, scheme: str) -> None:
    """401 unless `header` holds the expected key; compared in constant time."""
    given = request.headers.get(header)
    if given is None or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing or wrong {header} header",
            headers={"WWW-Authenticate": scheme},
        )
