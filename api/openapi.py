"""The OpenAPI document: request schemas built from the model card, every status a route answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.dependencies import API_KEY_HEADER

_BODY_SCHEMAS = {"/predict": "House", "/predict/batch": "Batch"}

# The body schema comes from the model card (see api.main); the key header is checked in the route.
PREDICTION_ROUTE: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
    "parameters": [
        {
            "name": API_KEY_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "required when the service is configured with BOSTON_API_API_KEY",
        }
    ],
    "responses": {
        "401": {"description": "missing or wrong API key"},
        "413": {"description": "request body too large"},
        "503": {"description": "no model loaded; the detail says why"},
    },
}


def openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    runtime = getattr(app.state, "runtime", None)
    if runtime is None or runtime.house is None or runtime.batch is None:
        return schema  # no card yet: documented without request schemas, and not cached
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, validator in (("House", runtime.house), ("Batch", runtime.batch)):
        body = validator.json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    for path, name in _BODY_SCHEMAS.items():
        content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        content["schema"] = {"$ref": f"#/components/schemas/{name}"}
    app.openapi_schema = schema
    return schema
