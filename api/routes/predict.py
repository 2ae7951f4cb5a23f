"""Prediction routes: one house, a batch, and MLflow's /invocations scoring protocol.

Bodies are validated straight from bytes by the card-built schema (pydantic-core parses the JSON
itself); together with the fast path in api/fast_path.py this keeps /predict's cost per request
within about twice that of an empty FastAPI endpoint (see README, Speed).
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from api.dependencies import authorise, serving
from api.model_store import ServedModel
from api.openapi import PREDICTION_ROUTE as _OPENAPI
from api.runtime import Runtime
from api.schemas import BatchPrediction, Prediction, Row

_T = TypeVar("_T")

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def register(app: FastAPI) -> None:
    """Add the prediction routes to the app itself (see api.main for why not a router)."""
    tags: list[str | Enum] = ["predictions"]
    app.post("/predict", response_model=Prediction, openapi_extra=_OPENAPI, tags=tags)(predict)
    app.post("/predict/batch", response_model=BatchPrediction, openapi_extra=_OPENAPI, tags=tags)(
        predict_batch
    )
    app.post("/invocations", openapi_extra=_OPENAPI, tags=tags)(invocations)


# The routes take the Request alone and look the runtime up themselves: every FastAPI dependency
# costs time on each call, and these are the hot paths.


async def predict(request: Request) -> Response:
    """Predict MEDV for one house."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    model = serving(runtime)
    assert runtime.house is not None  # set whenever a model is loaded
    values = _validate(runtime.house, await request.body())
    matrix = model.matrix([values])
    prediction = model.predict_one(matrix[0])
    elapsed_ms = (time.perf_counter() - started) * 1000
    runtime.metrics.predictions.observe(prediction)
    if runtime.metrics.inputs is not None:
        runtime.metrics.inputs.observe_row(matrix[0])
    runtime.log.record(
        request_id=request.state.request_id, route="/predict", model_version=model.version,
        inputs=[values], predictions=[prediction], latency_ms=elapsed_ms,
    )  # fmt: skip
    return _json(
        {"prediction": prediction, "model_version": model.version,
         "ignored_inputs": runtime.ignored_inputs},
        elapsed_ms,
    )  # fmt: skip


async def predict_batch(request: Request, background: BackgroundTasks) -> Response:
    """Predict MEDV for many houses in one vectorised call: `{"rows": [house, ...]}`."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    model = serving(runtime)
    assert runtime.batch is not None
    rows = _validate(runtime.batch, await request.body())["rows"]
    return await _respond(
        request, model, runtime, background, rows, started, route="/predict/batch",
        extra={"model_version": model.version, "ignored_inputs": runtime.ignored_inputs},
    )  # fmt: skip


async def invocations(request: Request, background: BackgroundTasks) -> Response:
    """MLflow's scoring protocol: one of `dataframe_split`, `dataframe_records`, `instances` or
    `inputs`; answers `{"predictions": [...]}` like `mlflow models serve`."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    model = serving(runtime)
    assert runtime.batch is not None
    try:
        payload = orjson.loads(await request.body())
    except ValueError as error:
        raise _invalid(("body",), f"body is not valid JSON: {error}", "json_invalid") from None
    key, records = _mlflow_records(payload)
    if len(records) > runtime.settings.max_batch_rows:
        raise _invalid(
            ("body", key), f"at most {runtime.settings.max_batch_rows} rows per request", "too_long"
        )
    rows = _validate_python(runtime.batch, {"rows": records}, key)["rows"]
    return await _respond(request, model, runtime, background, rows, started, route="/invocations")


async def _respond(
    request: Request,
    model: ServedModel,
    runtime: Runtime,
    background: BackgroundTasks,
    rows: list[Row],
    started: float,
    *,
    route: str,
    extra: dict[str, Any] | None = None,
) -> Response:
    matrix = model.matrix(rows)
    # A large batch would hold the event loop; scoring it in a worker thread keeps /health live.
    predictions = (await anyio.to_thread.run_sync(model.predict, matrix)).tolist()
    elapsed_ms = (time.perf_counter() - started) * 1000
    # Observing and logging thousands of predictions would dominate the latency, so both run
    # after the response has been sent.
    background.add_task(runtime.metrics.predictions.observe_many, predictions)
    if runtime.metrics.inputs is not None:
        background.add_task(runtime.metrics.inputs.observe, matrix)
    background.add_task(
        runtime.log.record, request_id=request.state.request_id, route=route,
        model_version=model.version, inputs=rows, predictions=predictions, latency_ms=elapsed_ms,
    )  # fmt: skip
    return _json({"predictions": predictions, **(extra or {})}, elapsed_ms)


def _json(content: dict[str, Any], elapsed_ms: float) -> Response:
    # orjson: the standard library's encoder was a visible share of a /predict call
    return Response(
        orjson.dumps(content),
        media_type="application/json",
        headers={"server-timing": f"app;dur={elapsed_ms:.3f}"},
    )


def _validate(schema: TypeAdapter[_T], body: bytes) -> _T:
    try:
        return schema.validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(_errors(error, ("body",))) from None


def _validate_python(schema: TypeAdapter[_T], data: Any, key: str) -> _T:
    try:
        return schema.validate_python(data)
    except ValidationError as error:
        # loc ("rows", i, field) -> ("body", key, i, field): name the part the client sent
        raise RequestValidationError(_errors(error, ("body", key), drop=1)) from None


def _errors(
    error: ValidationError, prefix: tuple[str | int, ...], drop: int = 0
) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *item["loc"][drop:]], "msg": item["msg"], "type": item["type"],
         "input": item.get("input")}
        for item in error.errors(include_url=False, include_context=False)
    ]  # fmt: skip


def _invalid(loc: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": list(loc), "msg": msg, "type": kind}])


def _mlflow_records(payload: Any) -> tuple[str, list[Any]]:
    """Turn any of MLflow's input formats into a list of records (dicts)."""
    keys = sorted(set(payload) & set(MLFLOW_FORMATS)) if isinstance(payload, dict) else []
    unknown = (
        sorted(set(payload) - {*MLFLOW_FORMATS, "params"}) if isinstance(payload, dict) else []
    )
    if len(keys) != 1 or unknown:
        raise _invalid(
            ("body",),
            f"expected a JSON object with exactly one of {list(MLFLOW_FORMATS)}"
            + (f"; unknown keys {unknown}" if unknown else ""),
            "value_error",
        )
    key = keys[0]
    data = payload[key]
    if key == "dataframe_split":
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("columns"), list)
            or not isinstance(data.get("data"), list)
        ):
            raise _invalid(
                ("body", key), "needs 'columns' (list) and 'data' (list of rows)", "value_error"
            )
        columns = data["columns"]
        records = []
        for index, row in enumerate(data["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise _invalid(
                    ("body", key, "data", index),
                    f"row must be a list of {len(columns)} values, one per column",
                    "value_error",
                )
            records.append(dict(zip(columns, row, strict=True)))
        return key, records
    if isinstance(data, dict) and key in ("instances", "inputs"):
        return key, _columns_to_records(data, key)
    if not isinstance(data, list):
        raise _invalid(("body", key), "must be a list of records", "value_error")
    return key, data


def _columns_to_records(columns: dict[str, Any], key: str) -> list[dict[str, Any]]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise _invalid(
            ("body", key), "columnar input needs equal-length lists per column", "value_error"
        )
    (length,) = lengths
    return [{name: values[i] for name, values in columns.items()} for i in range(length)]
