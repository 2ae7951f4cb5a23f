"""Named dependencies, so a handler reads `def predict(model: ModelDep, ...)`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from api.model_store import ServedModel
from api.runtime import Runtime
from api.settings import Settings


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings_from_app(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]


def get_model(runtime: RuntimeDep) -> ServedModel:
    if runtime.model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"model not loaded: {runtime.reason}"
        )
    return runtime.model


ModelDep = Annotated[ServedModel, Depends(get_model)]


def require_api_key(
    settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None
) -> None:
    """When an API key is configured, the prediction routes need it; compared in constant time."""
    expected = settings.api_key
    if expected is None:
        return
    if x_api_key is None or not hmac.compare_digest(
        x_api_key.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "API-Key"},
        )
