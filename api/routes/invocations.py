"""MLflow's scoring protocol, as `mlflow models serve` speaks it: POST /invocations in any of its
four input formats, GET /ping and GET /version, so MLflow's own client and hosts built for MLflow
models (their health checks included) use this service unchanged.

Columnar bodies (`dataframe_split`, column-wise `inputs`/`instances`) are validated column by
column in numpy (api/columnar.py) with the row schema's own messages; record bodies row by row.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse

from api.columnar import Records, Table, TableInvalid
from api.dependencies import JsonBody, RuntimeDep
from api.openapi import body_declared_later
from api.schemas import Predictions
from api.scoring import BatchScoringDep, invalid, validated

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")

router = APIRouter(tags=["mlflow"])
# /ping and /version are for hosts and MLflow's client, not for the API's readers
probes = APIRouter(include_in_schema=False)


@router.post("/invocations", openapi_extra=body_declared_later(), response_model_exclude_none=True)
async def invocations(body: JsonBody, scoring: BatchScoringDep) -> Predictions:
    """MLflow's scoring protocol: one of `dataframe_split`, `dataframe_records`, `instances` or
    `inputs`; answers `{"predictions": [...]}` like `mlflow models serve`, and adds each row's
    conformal interval under `"intervals"` when MLflow's `params` field asks:
    `"params": {"intervals": true}`."""
    started = time.perf_counter()
    key, data = _mlflow_body(body)
    with_intervals = _intervals_asked(body)
    max_rows = scoring.runtime.settings.max_batch_rows
    if len(data) > max_rows:
        raise invalid(("body", key), f"at most {max_rows} rows per request", "too_long")
    current = scoring.current
    matrix = None
    if isinstance(data, Table):
        try:
            matrix = current.columnar.matrix(data)
        except TableInvalid as bad:
            raise RequestValidationError(_prefixed(bad.errors, ("body", key))) from None
        rows: Any = Records(data) if matrix is not None else list(Records(data))
    else:
        rows = data
    if matrix is None:  # what the columnar check leaves to the row schema
        rows = validated(current.batch, {"rows": rows}, ("body", key), drop=1)["rows"]
        matrix = current.model.matrix(rows)
    scored = await scoring.predict(matrix, rows, started, route="/invocations")
    intervals = scored.intervals() if with_intervals else None
    return Predictions(predictions=scored.predictions, intervals=intervals)


@probes.get("/ping")
async def ping(runtime: RuntimeDep) -> Response:
    """MLflow's health check: 200 once a model is serving (503, with the reason, before)."""
    if runtime.serving is None:
        return PlainTextResponse(f"model not loaded: {runtime.reason}\n", status_code=503)
    return Response("\n", media_type="application/json")


@probes.get("/version")
async def version(request: Request) -> PlainTextResponse:
    """The service's version, where `mlflow models serve` tells MLflow's."""
    return PlainTextResponse(request.app.version)


def _intervals_asked(payload: dict[str, Any]) -> bool:
    """MLflow's inference parameters: `intervals` (true or false) is the one this model reads."""
    asked = payload.get("params", {}).get("intervals", False)
    if not isinstance(asked, bool):
        raise invalid(("body", "params", "intervals"), "must be true or false", "bool_type")
    return asked


def _prefixed(errors: list[dict[str, Any]], prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [{**item, "loc": [*prefix, *item["loc"]]} for item in errors]


def _mlflow_body(payload: Any) -> tuple[str, Table | list[Any]]:
    """Which of MLflow's input formats the body uses, and its rows: a Table for the columnar
    formats (checked column-wise), a list of records for the others (checked row by row)."""
    keys = sorted(set(payload) & set(MLFLOW_FORMATS)) if isinstance(payload, dict) else []
    unknown = (
        sorted(set(payload) - {*MLFLOW_FORMATS, "params"}) if isinstance(payload, dict) else []
    )
    if len(keys) != 1 or unknown:
        raise invalid(
            ("body",),
            f"expected a JSON object with exactly one of {list(MLFLOW_FORMATS)}"
            + (f"; unknown keys {unknown}" if unknown else ""),
            "value_error",
        )
    key = keys[0]
    if not isinstance(payload.get("params", {}), dict):
        raise invalid(
            ("body", "params"), "must be an object (MLflow's inference parameters)", "dict_type"
        )
    data = payload[key]
    if key == "dataframe_split":
        return key, _split_table(data, key)
    if isinstance(data, dict) and key in ("instances", "inputs"):
        return key, _column_table(data, key)
    if not isinstance(data, list):
        raise invalid(("body", key), "must be a list of records", "value_error")
    return key, data


def _split_table(data: Any, key: str) -> Table:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("columns"), list)
        or not isinstance(data.get("data"), list)
    ):
        raise invalid(
            ("body", key), "needs 'columns' (list) and 'data' (list of rows)", "value_error"
        )
    unknown = sorted(set(data) - {"columns", "data", "index"})
    if unknown:
        raise invalid(
            ("body", key),
            f"unknown keys {unknown}; a split frame has 'columns', 'data' and 'index'",
            "value_error",
        )
    if not isinstance(data.get("index", []), list):
        raise invalid(("body", key, "index"), "must be a list", "list_type")
    columns: list[Any] = data["columns"]
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if not isinstance(name, str):
            raise invalid(
                ("body", key, "columns", index), "column names must be strings", "value_error"
            )
        if name in seen:
            # as for a key repeated in a record: which of the two values was meant is unknown
            raise invalid(
                ("body", key, "columns", index), f"duplicate column {name!r}", "duplicate_key"
            )
        seen.add(name)
    rows: list[Any] = data["data"]
    width = len(columns)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise invalid(
                ("body", key, "data", index),
                f"row must be a list of {width} values, one per column",
                "value_error",
            )
    return Table(columns, rows, by_row=True)


def _column_table(columns: dict[str, Any], key: str) -> Table:
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise invalid(
            ("body", key), "columnar input needs equal-length lists per column", "value_error"
        )
    return Table(list(columns), list(columns.values()), by_row=False)
