"""The OpenAPI document: request schemas built from the model card, every status a route answers.

FastAPI documents what it can see in the handlers; the rest is added here, in one place, the way
FastAPI's docs extend the document (`app.openapi` overridden): the card-built request bodies (the
card can change with a reload, so the routes validate with the schema of the model serving now),
MLflow's four scoring formats for /invocations, and the answers the middleware gives before a
handler runs (408, 413, 415, 429) with their bodies and headers. Schemathesis checks the document
against the live service (tests/api/test_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_BODY_SCHEMAS = {
    "/predict": "House",
    "/predict/batch": "Batch",
    "/invocations": "Invocation",
    "/feedback": "Feedback",
}
_REF = "#/components/schemas/{model}"


def body_declared_later() -> dict[str, Any]:
    """A route's `openapi_extra`: a JSON body, its schema filled in by openapi() from the card."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}


_PROBLEM = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "what was wrong, in words"}},
    "required": ["detail"],
}
_VALIDATION_PROBLEM = {
    "type": "object",
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": "where: 'body', then the key, row and field",
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                    "input": {"description": "the value that was refused"},
                },
                "required": ["loc", "msg", "type"],
            },
        }
    },
    "required": ["detail"],
}
_RATE_HEADERS = {
    "RateLimit-Limit": "requests allowed in the window of the limit that decided",
    "RateLimit-Remaining": "requests left in that window",
    "RateLimit-Reset": "seconds until that window frees a request",
}


def _answer(description: str, schema: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}},
    }
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "integer"}}
            for name, text in headers.items()
        }
    return answer


_RATE_LIMITED = _answer(
    "over the client's rate limit (when BOSTON_API_RATE_LIMIT is set)",
    "Problem",
    **{"Retry-After": "seconds to wait before trying again"},
    **_RATE_HEADERS,
)
_NOT_READY = _answer(
    "no model loaded, or the worker too far behind to start the request soon (then with "
    "Retry-After); the detail says which",
    "Problem",
    **{"Retry-After": "seconds to wait before trying again (when overloaded)"},
)
# what each kind of route can answer besides its 200
_PREDICTION_ANSWERS = {
    "401": _answer("missing or wrong API key (when BOSTON_API_API_KEY is set)", "Problem"),
    "408": _answer("the body did not arrive within BOSTON_API_BODY_TIMEOUT seconds", "Problem"),
    "413": _answer("the body exceeds BOSTON_API_MAX_BODY_BYTES", "Problem"),
    "415": _answer("a Content-Type other than JSON, or a compressed body", "Problem"),
    "422": _answer("the body is not valid JSON or breaks the contract", "ValidationProblem"),
    "429": _RATE_LIMITED,
    "503": _NOT_READY,
}
_ROUTE_ANSWERS = {
    ("/predict", "post"): _PREDICTION_ANSWERS,
    ("/predict/batch", "post"): _PREDICTION_ANSWERS,
    ("/invocations", "post"): _PREDICTION_ANSWERS,
    ("/feedback", "post"): _PREDICTION_ANSWERS,
    ("/model", "get"): {"429": _RATE_LIMITED, "503": _NOT_READY},
}


def openapi(app: FastAPI) -> dict[str, Any]:
    runtime = getattr(app.state, "runtime", None)
    current = runtime.serving if runtime is not None else None
    # built once per served model: a reloaded card may bring other bounds
    if app.openapi_schema and getattr(app.state, "openapi_for", None) is current:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(Problem=_PROBLEM, ValidationProblem=_VALIDATION_PROBLEM)
    for (path, method), answers in _ROUTE_ANSWERS.items():
        responses = schema["paths"][path][method]["responses"]
        responses.update(answers)
    if current is None:
        return schema  # no card yet: documented without request schemas, and not cached
    for name, validator in (("House", current.house), ("Batch", current.batch)):
        body = validator.json_schema(ref_template=_REF)
        components.update(body.pop("$defs", {}))
        components[name] = body
    max_rows = app.state.settings.max_batch_rows
    components["Invocation"] = _invocation(components["House"], max_rows)
    feedback = current.feedback.json_schema(ref_template=_REF)
    components.update(feedback.pop("$defs", {}))
    components["Feedback"] = {**feedback, "description": "one label, or a list of them"}
    for path, name in _BODY_SCHEMAS.items():
        content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        content["schema"] = {"$ref": _REF.format(model=name)}
    app.openapi_schema, app.state.openapi_for = schema, current
    return schema


def _invocation(house: dict[str, Any], max_rows: int) -> dict[str, Any]:
    """MLflow's scoring body: exactly one of its four formats, rows as the card's houses."""
    records = {"type": "array", "items": {"$ref": _REF.format(model="House")}, "minItems": 1,
               "maxItems": max_rows}  # fmt: skip
    # column-wise: each feature a list of its values, every list as long as the others
    columns = {
        "type": "object",
        "properties": {
            name: {"type": "array", "items": feature, "minItems": 1, "maxItems": max_rows}
            for name, feature in house["properties"].items()
        },
        "required": house.get("required", []),
        "additionalProperties": False,
    }
    split = {
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "items": {"enum": list(house["properties"])},
                "uniqueItems": True,
            },
            "data": {
                "type": "array",
                "items": {"type": "array", "items": {"type": ["number", "null"]}},
                "minItems": 1,
                "maxItems": max_rows,
                "description": "rows, each with one value per column, in the columns' order",
            },
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    formats = {
        "dataframe_split": split,
        "dataframe_records": records,
        "instances": {"anyOf": [records, columns]},
        "inputs": {"anyOf": [records, columns]},
    }
    return {
        "title": "Invocation",
        "description": "one of MLflow's scoring formats (as `mlflow models serve` takes them)",
        "oneOf": [
            {
                "type": "object",
                "title": key,
                "properties": {key: body, "params": {"type": "object"}},
                "required": [key],
                "additionalProperties": False,
            }
            for key, body in formats.items()
        ],
    }
