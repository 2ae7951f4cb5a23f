"""Prediction routes: one house, a batch, and MLflow's /invocations scoring protocol.

Row-shaped bodies are validated straight from bytes by the card-built schema (pydantic-core parses
the JSON itself); with the fast path in api/fast_path.py this keeps /predict's own cost per request
small beside the web stack's (see README, Speed). Columnar bodies
(`dataframe_split`, column-wise `inputs`/`instances`) are validated column by column in numpy
(api/columnar.py), with the row schema's own messages. A key repeated in an object is a 422
naming it (api/parsing.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import Enum
from operator import itemgetter
from typing import Any, TypeVar

import anyio
import numpy as np
import orjson
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from api import parsing
from api.columnar import Records, Table, TableInvalid
from api.dependencies import authorise, serving
from api.direct import DirectRoute
from api.model_store import ServedModel
from api.openapi import PREDICTION_ROUTE as _OPENAPI
from api.runtime import Runtime, Serving
from api.schemas import BatchPrediction, Prediction, Row

_T = TypeVar("_T")

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def register(app: FastAPI) -> None:
    """Add the prediction routes to the app itself (see api.main for why not a router)."""
    tags: list[str | Enum] = ["predictions"]
    for path, endpoint, model in (
        ("/predict", predict, Prediction),
        ("/predict/batch", predict_batch, BatchPrediction),
        ("/invocations", invocations, None),
    ):
        app.router.add_api_route(
            path, endpoint, methods=["POST"], response_model=model, openapi_extra=_OPENAPI,
            tags=tags, route_class_override=DirectRoute,
        )  # fmt: skip


# The routes take the Request alone, look the runtime up themselves and return finished
# Responses, so FastAPI's handler is skipped (api/direct.py): these are the hot paths.


async def predict(request: Request) -> Response:
    """Predict MEDV for one house."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    current = serving(runtime)
    model = current.model
    body = await read_body(request)
    values = validate_body(current.house, body)
    if parsing.may_hide_duplicates(body, len(values)):
        _refuse_duplicates(body)
    row = model.matrix([values])[0]
    prediction = model.predict_one(row)
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics = runtime.metrics
    metrics.predictions.observe(prediction)
    if metrics.inputs is not None:
        metrics.inputs.observe_row(row)
    request_id = request.scope["state"]["request_id"]  # set by ServiceMiddleware
    version = model.version
    runtime.log.record(
        request_id=request_id, route="/predict", model_version=version,
        inputs=[values], predictions=[prediction], latency_ms=elapsed_ms,
    )  # fmt: skip
    runtime.answered.remember(request_id, version, 1)
    return _Answer(
        {"prediction": prediction, "model_version": version,
         "ignored_inputs": current.ignored_inputs},
        elapsed_ms,
    )  # fmt: skip


async def predict_batch(request: Request) -> Response:
    """Predict MEDV for many houses in one vectorised call: `{"rows": [house, ...]}`."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    current = serving(runtime)
    model = current.model
    body = await read_body(request)
    extra = {"model_version": model.version, "ignored_inputs": current.ignored_inputs}
    fast = _uniform_batch(body, current, runtime.settings.max_batch_rows)
    if fast is not None:
        matrix, sent = fast
        return await _respond(
            request, model, runtime, matrix, sent, started, route="/predict/batch",
            extra=extra,
        )  # fmt: skip
    rows = validate_body(current.batch, body)["rows"]
    if parsing.may_hide_duplicates(body, 1 + sum(map(len, rows))):
        _refuse_duplicates(body)
    return await _respond(
        request, model, runtime, model.matrix(rows), rows, started,
        route="/predict/batch", extra=extra,
    )  # fmt: skip


def _uniform_batch(
    body: bytes, current: Serving, max_rows: int
) -> tuple[np.ndarray, list[Row]] | None:
    """The common batch, `{"rows": [...]}` whose rows all name the same fields in the same order,
    checked column-wise as a table: the matrix and the rows as sent, or None when the row schema
    must decide (anything else, and every invalid batch, so its 422 is the row schema's own)."""
    try:
        payload = orjson.loads(body)  # NaN, Infinity or a huge integer: the row schema words it
    except ValueError:
        return None
    rows = payload.get("rows") if isinstance(payload, dict) and len(payload) == 1 else None
    if not isinstance(rows, list) or not rows or len(rows) > max_rows:
        return None
    if set(map(type, rows)) != {dict}:
        return None
    shapes = set(map(tuple, rows))
    if len(shapes) != 1:
        return None
    (columns,) = shapes
    if not columns:
        return None
    # itemgetter of one name gives the value itself, of several a tuple: one row of the table
    take = itemgetter(*columns)
    values = list(map(take, rows)) if len(columns) > 1 else [(take(row),) for row in rows]
    try:
        matrix = current.columnar.matrix(Table(list(columns), values, by_row=True))
    except TableInvalid:
        return None
    # valid rows hold numbers and contract names only: one colon per key, unless one is repeated
    if matrix is None or parsing.may_hide_duplicates(body, 1 + len(rows) * len(columns)):
        return None
    return matrix, rows


async def invocations(request: Request) -> Response:
    """MLflow's scoring protocol: one of `dataframe_split`, `dataframe_records`, `instances` or
    `inputs`; answers `{"predictions": [...]}` like `mlflow models serve`."""
    started = time.perf_counter()
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    current = serving(runtime)
    model = current.model
    try:
        payload = parsing.parse(await read_body(request))
    except parsing.DuplicateKey as duplicate:
        raise RequestValidationError([duplicate.error()]) from None
    except ValueError as error:
        raise _invalid(("body",), f"body is not valid JSON: {error}", "json_invalid") from None
    key, body = _mlflow_body(payload)
    if len(body) > runtime.settings.max_batch_rows:
        raise _invalid(
            ("body", key), f"at most {runtime.settings.max_batch_rows} rows per request", "too_long"
        )
    if isinstance(body, Table):
        try:
            matrix = current.columnar.matrix(body)
        except TableInvalid as invalid:
            raise RequestValidationError(_prefixed(invalid.errors, ("body", key))) from None
        if matrix is not None:
            return await _respond(
                request, model, runtime, matrix, Records(body), started,
                route="/invocations",
            )  # fmt: skip
        body = list(Records(body))  # what the columnar check leaves to the row schema
    rows = _validate_python(current.batch, {"rows": body}, key)["rows"]
    return await _respond(
        request, model, runtime, model.matrix(rows), rows, started,
        route="/invocations",
    )  # fmt: skip


async def _respond(
    request: Request,
    model: ServedModel,
    runtime: Runtime,
    matrix: np.ndarray,
    rows: Sequence[Row],
    started: float,
    *,
    route: str,
    extra: dict[str, Any] | None = None,
) -> Response:
    # A large batch would hold the event loop; scoring it in a worker thread keeps /health live.
    predictions = (await anyio.to_thread.run_sync(model.predict, matrix)).tolist()
    elapsed_ms = (time.perf_counter() - started) * 1000
    # Observing and logging thousands of predictions would dominate the latency, so both run
    # after the response has been sent.
    request_id = request.scope["state"]["request_id"]  # set by ServiceMiddleware
    background = BackgroundTasks()
    background.add_task(runtime.metrics.predictions.observe_many, predictions)
    if runtime.metrics.inputs is not None:
        background.add_task(runtime.metrics.inputs.observe, matrix)
    background.add_task(
        runtime.log.record, request_id=request_id, route=route,
        model_version=model.version, inputs=rows, predictions=predictions, latency_ms=elapsed_ms,
    )  # fmt: skip
    runtime.answered.remember(request_id, model.version, len(predictions))
    response = _Answer({"predictions": predictions, **(extra or {})}, elapsed_ms)
    response.background = background
    return response


class _Answer(Response):
    """A 200 JSON answer, its header lines written out directly: Starlette's Response builds
    them from a dict through a general encoder, about 2 us of a /predict call."""

    def __init__(self, content: dict[str, Any], elapsed_ms: float) -> None:
        # orjson: the standard library's encoder was a visible share of a /predict call
        self.body = orjson.dumps(content)
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            (b"content-type", b"application/json"),
            (b"server-timing", b"app;dur=%.3f" % elapsed_ms),
        ]


async def read_body(request: Request) -> bytes:
    """The whole request body. Starlette's `request.body()` does the same through an async
    generator, which cost /predict about 8 us of its 110 in process."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def validate_body(schema: TypeAdapter[_T], body: bytes) -> _T:
    try:
        return schema.validate_json(body)
    except ValidationError as error:
        # a repeated key explains the body better than what its last value broke
        _refuse_duplicates(body)
        raise RequestValidationError(_errors(error, ("body",))) from None


def _refuse_duplicates(body: bytes) -> None:
    try:
        parsing.check_duplicates(body)
    except parsing.DuplicateKey as duplicate:
        raise RequestValidationError([duplicate.error()]) from None


def _validate_python(schema: TypeAdapter[_T], data: Any, key: str) -> _T:
    try:
        return schema.validate_python(data)
    except ValidationError as error:
        # loc ("rows", i, field) -> ("body", key, i, field): name the part the client sent
        raise RequestValidationError(_errors(error, ("body", key), drop=1)) from None


def _prefixed(errors: list[dict[str, Any]], prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [{**item, "loc": [*prefix, *item["loc"]]} for item in errors]


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


def _mlflow_body(payload: Any) -> tuple[str, Table | list[Any]]:
    """Which of MLflow's input formats the body uses, and its rows: a Table for the columnar
    formats (checked column-wise), a list of records for the others (checked row by row)."""
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
    if not isinstance(payload.get("params", {}), dict):
        raise _invalid(
            ("body", "params"), "must be an object (MLflow's inference parameters)", "dict_type"
        )
    data = payload[key]
    if key == "dataframe_split":
        return key, _split_table(data, key)
    if isinstance(data, dict) and key in ("instances", "inputs"):
        return key, _column_table(data, key)
    if not isinstance(data, list):
        raise _invalid(("body", key), "must be a list of records", "value_error")
    return key, data


def _split_table(data: Any, key: str) -> Table:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("columns"), list)
        or not isinstance(data.get("data"), list)
    ):
        raise _invalid(
            ("body", key), "needs 'columns' (list) and 'data' (list of rows)", "value_error"
        )
    unknown = sorted(set(data) - {"columns", "data", "index"})
    if unknown:
        raise _invalid(
            ("body", key),
            f"unknown keys {unknown}; a split frame has 'columns', 'data' and 'index'",
            "value_error",
        )
    if not isinstance(data.get("index", []), list):
        raise _invalid(("body", key, "index"), "must be a list", "list_type")
    columns: list[Any] = data["columns"]
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if not isinstance(name, str):
            raise _invalid(
                ("body", key, "columns", index), "column names must be strings", "value_error"
            )
        if name in seen:
            # as for a key repeated in a record: which of the two values was meant is unknown
            raise _invalid(
                ("body", key, "columns", index), f"duplicate column {name!r}", "duplicate_key"
            )
        seen.add(name)
    rows: list[Any] = data["data"]
    width = len(columns)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise _invalid(
                ("body", key, "data", index),
                f"row must be a list of {width} values, one per column",
                "value_error",
            )
    return Table(columns, rows, by_row=True)


def _column_table(columns: dict[str, Any], key: str) -> Table:
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise _invalid(
            ("body", key), "columnar input needs equal-length lists per column", "value_error"
        )
    return Table(list(columns), list(columns.values()), by_row=False)
