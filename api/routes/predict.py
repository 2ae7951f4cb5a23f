"""Prediction routes: one house, and a batch of them.

The request schema is the model card's (api/schemas.py), held by the model now serving: a reload
may bring other bounds, so the body is validated inside the route and the card-built schema is
declared in OpenAPI by api/openapi.py, as FastAPI's docs show for a body the route reads itself.
"""

from __future__ import annotations

import time
from operator import itemgetter
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from api.columnar import Table, TableInvalid
from api.dependencies import JsonBody, get_runtime, get_serving, json_body
from api.openapi import body_declared_later
from api.runtime import Serving
from api.schemas import BatchPrediction, Prediction, Row, interval_of
from api.scoring import BatchScoringDep, account_one, elapsed_ms, validated

router = APIRouter(tags=["predictions"])


@router.post("/predict", openapi_extra=body_declared_later())
async def predict(request: Request) -> Prediction:
    """Predict MEDV for one house."""
    started = time.perf_counter()
    # The hot path awaits the dependency functions itself rather than declaring them: FastAPI
    # resolves each declared one per request, at more than the model's cost (decision 0012).
    runtime = await get_runtime(request)
    current = await get_serving(runtime)
    values = validated(current.house, await json_body(request))
    model = current.model
    row = model.matrix([values])[0]
    prediction = model.predict_one(row)
    calibration = model.intervals
    bounds = calibration.one(prediction) if calibration is not None else None
    account_one(request, runtime, current, row, values, prediction, bounds, elapsed_ms(started))
    return Prediction(
        prediction=prediction,
        interval=interval_of(bounds, calibration.level) if calibration and bounds else None,
        model_version=model.version,
        ignored_inputs=current.ignored_inputs,
    )


@router.post("/predict/batch", openapi_extra=body_declared_later())
async def predict_batch(body: JsonBody, scoring: BatchScoringDep) -> BatchPrediction:
    """Predict MEDV for many houses in one vectorised call: `{"rows": [house, ...]}`."""
    started = time.perf_counter()
    current = scoring.current
    uniform = _uniform_batch(body, current, scoring.runtime.settings.max_batch_rows)
    if uniform is not None:
        matrix, rows = uniform
    else:
        rows = validated(current.batch, body)["rows"]
        matrix = current.model.matrix(rows)
    scored = await scoring.predict(matrix, rows, started, route="/predict/batch")
    return BatchPrediction(
        predictions=scored.predictions,
        intervals=scored.intervals(),
        model_version=current.model.version,
        ignored_inputs=current.ignored_inputs,
    )


def _uniform_batch(
    payload: Any, current: Serving, max_rows: int
) -> tuple[np.ndarray, list[Row]] | None:
    """The common batch, `{"rows": [...]}` whose rows all name the same fields in the same order,
    checked column-wise as a table: the matrix and the rows as sent, or None when the row schema
    must decide (anything else, and every invalid batch, so its 422 is the row schema's own)."""
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
    return None if matrix is None else (matrix, rows)
