"""Named dependencies, so a handler reads `def model_card(model: ModelDep)`."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from api import parsing
from api.model_store import ServedModel
from api.runtime import Runtime, Serving

API_KEY_HEADER = "X-API-Key"

# The security scheme OpenAPI declares: Swagger UI's Authorize button, and generated clients,
# send the key in this header. auto_error=False: a missing key gets the same 401 as a wrong one.
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKey",
    description="the key the service was started with (BOSTON_API_API_KEY)",
    auto_error=False,
)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_serving(runtime: RuntimeDep) -> Serving:
    """The model serving now with its validators, or 503 with the reason none is loaded.

    Taken once per request: a reload swaps it as a whole, so one answer comes from one model.
    """
    current = runtime.serving
    if current is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"model not loaded: {runtime.reason}"
        )
    return current


ServingDep = Annotated[Serving, Depends(get_serving)]


async def get_model(current: ServingDep) -> ServedModel:
    return current.model


ModelDep = Annotated[ServedModel, Depends(get_model)]


async def require_api_key(
    request: Request, given: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless the request carries the configured API key. The app factory adds this to the
    protected routers only when a key is configured, so the document says when routes are open."""
    expected: SecretStr | None = request.app.state.settings.api_key
    if expected is not None:
        check_key(given, expected, header=API_KEY_HEADER, scheme="API-Key")


def check_key(given: str | None, expected: SecretStr, *, header: str, scheme: str) -> None:
    """401 unless `given` is the expected key; compared in constant time."""
    if given is None or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing or wrong {header} header",
            headers={"WWW-Authenticate": scheme},
        )


async def json_body(request: Request) -> Any:
    """The request body parsed as strict JSON; a 422 naming a repeated key, or saying why the
    body is not JSON. The routes declare their card-built body schema in OpenAPI themselves."""
    try:
        return parsing.parse(await request.body())
    except (parsing.DuplicateKey, parsing.NonFinite) as refused:
        raise RequestValidationError([refused.error()]) from None
    except ValueError as error:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": f"body is not valid JSON: {error}", "type": "json_invalid"}]
        ) from None


JsonBody = Annotated[Any, Depends(json_body)]
