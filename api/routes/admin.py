"""Operator routes: reload the model without a restart.

Out of the public OpenAPI document: it exists only where BOSTON_API_ADMIN_KEY is set (else 404),
and its key is not the clients' API key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from fastapi.responses import JSONResponse

from api.dependencies import RuntimeDep, check_key
from api.runtime import describe

ADMIN_KEY_HEADER = "X-Admin-Key"

router = APIRouter(include_in_schema=False)


@router.post("/admin/reload")
async def reload(
    runtime: RuntimeDep,
    admin_key: Annotated[str | None, Header(alias=ADMIN_KEY_HEADER)] = None,
) -> JSONResponse:
    """Load the model folder again and swap it in (every worker follows within a second): 200
    with the version now serving, or 409 with why the folder's model was refused while the model
    before it keeps serving."""
    expected = runtime.settings.admin_key
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    check_key(admin_key, expected, header=ADMIN_KEY_HEADER, scheme="Admin-Key")
    outcome = await runtime.reload()
    code = status.HTTP_200_OK if outcome.error is None else status.HTTP_409_CONFLICT
    return JSONResponse(describe(outcome), status_code=code)
