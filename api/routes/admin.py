"""Operator routes: reload the model without a restart.

Out of the public OpenAPI document: it exists only where BOSTON_API_ADMIN_KEY is set (else 404),
and its key is not the clients' API key.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from api.dependencies import require_key
from api.runtime import Runtime, describe

ADMIN_KEY_HEADER = "X-Admin-Key"


def register(app: FastAPI) -> None:
    app.post("/admin/reload", include_in_schema=False)(reload)


async def reload(request: Request) -> JSONResponse:
    """Load the model folder again and swap it in (every worker follows within a second): 200
    with the version now serving, or 409 with why the folder's model was refused while the model
    before it keeps serving."""
    expected = request.app.state.settings.admin_key
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    require_key(request, ADMIN_KEY_HEADER, expected, scheme="Admin-Key")
    runtime: Runtime = request.app.state.runtime
    outcome = await runtime.reload()
    code = status.HTTP_200_OK if outcome.error is None else status.HTTP_409_CONFLICT
    return JSONResponse(describe(outcome), status_code=code)
