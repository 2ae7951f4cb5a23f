"""Columnar bodies are checked column by column (api/columnar.py); rows one by one elsewhere. Both
must give the same verdict on the same rows: the same 422 detail, or the same predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.columnar import ColumnarValidator, Table, TableInvalid
from api.main import create_app
from api.model_store import ServedModel, load
from api.schemas import FIRST_TRACT, validators
from api.settings import Settings
from stages.contract import FEATURES, Column
from tests.conftest import export_tiny_model

NAMES = [feature.name for feature in FEATURES]
BY_NAME = {feature.name: feature for feature in FEATURES}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("model")
    export_tiny_model(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def client(tiny_model: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_dir=tiny_model, log_sink=str(tiny_model / "log.jsonl")))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def served(tiny_model: Path) -> ServedModel:
    return load(tiny_model)


def _valid(column: Column) -> st.SearchStrategy[Any]:
    if column.kind == "binary":
        return st.sampled_from([0, 1, 0.0, 1.0])
    if column.kind == "integer":
        return st.integers(int(column.minimum), int(column.maximum))
    return st.floats(column.minimum, column.maximum) | st.integers(
        int(column.minimum), int(column.maximum)
    )


def _invalid(column: Column) -> st.SearchStrategy[Any]:
    """What a client gets wrong: every value here breaks the contract for `column` (null only
    where the contract does not allow it)."""
    wrong: st.SearchStrategy[Any] = (
        st.floats(column.maximum, exclude_min=True, allow_infinity=False)
        | st.floats(max_value=column.minimum, exclude_max=True, allow_infinity=False)
        | st.integers(int(column.maximum) + 1, 10**30)
        | st.just(10**400)  # beyond float range: the row schema's words, not numpy's overflow
        | st.booleans()
        | st.text(max_size=4)
        | st.sampled_from([[1.0], {"value": 1.0}, "1.5"])
    )
    if column.kind == "binary":
        wrong = wrong | st.sampled_from([2, 0.5, -1])
    if column.kind == "integer":
        wrong = wrong | st.sampled_from([2.5, 1.000001, 23.9])
    if not column.nullable:
        wrong = wrong | st.none()
    return wrong


UNKNOWN = st.text(min_size=1, max_size=6).filter(lambda name: name not in BY_NAME)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[Any]]]:
    """A valid table (the contract's columns in any order, nullable ones sometimes null or left
    out), then none to a few faults: a bad value in some cell, a required column left out, an
    unknown column."""
    columns = draw(st.permutations(NAMES))
    optional = [name for name in NAMES if BY_NAME[name].nullable or name == "B"]
    left_out = draw(st.sets(st.sampled_from(optional), max_size=2))
    columns = [name for name in columns if name not in left_out]
    count = draw(st.integers(1, 6))
    valid = {
        name: _valid(BY_NAME[name]) | st.none() if BY_NAME[name].nullable else _valid(BY_NAME[name])
        for name in columns
    }
    rows = [[draw(valid[name]) for name in columns] for _ in range(count)]
    faults = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    for _ in range(faults):
        fault = draw(st.sampled_from(["value", "value", "value", "drop", "unknown"]))
        if fault == "value":
            row, position = draw(st.integers(0, count - 1)), draw(st.integers(0, len(columns) - 1))
            name = columns[position]
            wrong = _invalid(BY_NAME[name]) if name in BY_NAME else st.integers()
            rows[row][position] = draw(wrong)
        elif fault == "drop" and len(columns) > 1:
            position = draw(st.integers(0, len(columns) - 1))
            columns = columns[:position] + columns[position + 1 :]
            rows = [row[:position] + row[position + 1 :] for row in rows]
        elif fault == "unknown":
            name = draw(UNKNOWN)
            if name in columns:
                continue
            columns = [*columns, name]
            rows = [[*row, draw(st.integers(0, 5))] for row in rows]
    return columns, rows


def _post(client: TestClient, route: str, payload: Any) -> Any:
    return client.post(route, content=json.dumps(payload).encode())


def _answer(response: Any, key: str) -> tuple[int, Any]:
    """Status and body, with the part of the body an error names made format-neutral."""
    body = response.json()
    if response.status_code == 422:
        for item in body["detail"]:
            assert item["loc"][:2] == ["body", key], item
            item["loc"][1] = "FORMAT"
    return response.status_code, body


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables())
def test_columnar_bodies_get_the_row_paths_answer(
    client: TestClient, table: tuple[list[str], list[list[Any]]]
) -> None:
    columns, rows = table
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    by_column = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    row_path = _answer(
        _post(client, "/invocations", {"dataframe_records": records}), "dataframe_records"
    )
    split = _post(client, "/invocations", {"dataframe_split": {"columns": columns, "data": rows}})
    inputs = _post(client, "/invocations", {"inputs": by_column})
    event(f"status {row_path[0]}")
    assert _answer(split, "dataframe_split") == row_path
    assert _answer(inputs, "inputs") == row_path
    # /predict/batch validates from bytes, where pydantic's parser words an integer beyond float
    # range differently ("finite number"), so there the verdict and the places must agree
    batch = _post(client, "/predict/batch", {"rows": records})
    status, body = _answer(batch, "rows")
    assert status == row_path[0]
    if status == 200:
        assert body["predictions"] == row_path[1]["predictions"]
    else:
        assert [item["loc"] for item in body["detail"]] == [
            item["loc"] for item in row_path[1]["detail"]
        ]


@settings(max_examples=300, deadline=None)
@given(table=tables(), by_row=st.booleans())
def test_the_column_check_decides_what_the_row_schema_decides(
    served: ServedModel, table: tuple[list[str], list[list[Any]]], by_row: bool
) -> None:
    """At the level of the validators: the column check decides by itself (None, "let the row
    path decide", only for integers beyond float range), and decides as the row schema does."""
    columns, rows = table
    house, batch = validators(served.card, 100)
    check = ColumnarValidator(served.card, house, served.inputs)
    values = rows if by_row else [[row[i] for row in rows] for i in range(len(columns))]
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    try:
        expected: Any = served.matrix(batch.validate_python({"rows": records})["rows"])
    except ValidationError as error:
        expected = [
            {"loc": list(item["loc"][1:]), "msg": item["msg"], "type": item["type"],
             "input": item.get("input")}
            for item in error.errors(include_url=False, include_context=False)
        ]  # fmt: skip
    try:
        got: Any = check.matrix(Table(columns, values, by_row=by_row))
    except TableInvalid as invalid:
        got = invalid.errors
    if got is None:
        assert any(type(v) is int and abs(v) > 1e308 for row in rows for v in row)
        return
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables(), ragged=st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1))
def test_a_ragged_table_is_refused_at_its_first_ragged_row(
    client: TestClient, table: tuple[list[str], list[list[Any]]], ragged: list[tuple[int, bool]]
) -> None:
    columns, rows = table
    for index, longer in ragged:
        if index < len(rows):
            rows[index] = [*rows[index], 1.0] if longer else rows[index][:-1]
    first = next((i for i, row in enumerate(rows) if len(row) != len(columns)), None)
    response = _post(
        client, "/invocations", {"dataframe_split": {"columns": columns, "data": rows}}
    )
    if first is None:  # nothing ragged after all: judged as any table
        assert response.status_code in (200, 422)
        return
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "dataframe_split", "data", first],
         "msg": f"row must be a list of {len(columns)} values, one per column",
         "type": "value_error"}
    ]  # fmt: skip


def _split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}


def test_one_bad_value_among_many_rows_is_named_by_row_and_field(client: TestClient) -> None:
    rows: list[dict[str, Any]] = [dict(FIRST_TRACT) for _ in range(500)]
    rows[123]["RAD"] = 2.5
    rows[321]["CRIM"] = "high"
    rows[400]["CHAS"] = True
    detail = client.post("/invocations", json={"dataframe_split": _split(rows)}).json()["detail"]
    assert [(item["loc"], item["msg"], item["input"]) for item in detail] == [
        (["body", "dataframe_split", 123, "RAD"], "Value error, must be a whole number", 2.5),
        (["body", "dataframe_split", 321, "CRIM"], "Input should be a valid number", "high"),
        (["body", "dataframe_split", 400, "CHAS"], "Input should be a valid number", True),
    ]


def test_a_number_too_large_for_json_doubles_is_not_finite(client: TestClient) -> None:
    body = json.dumps({"dataframe_split": _split([FIRST_TRACT, FIRST_TRACT])})
    literal = body.replace('"data": [[0.00632', '"data": [[1e999', 1)
    detail = client.post("/invocations", content=literal).json()["detail"]
    assert detail[0]["loc"] == ["body", "dataframe_split", 0, "CRIM"]
    assert detail[0]["type"] == "finite_number"


def test_missing_and_unknown_columns_are_named_in_every_row(client: TestClient) -> None:
    rows = [{**{k: v for k, v in FIRST_TRACT.items() if k != "RM"}, "ROOMS": 6}] * 2
    detail = client.post("/invocations", json={"dataframe_split": _split(rows)}).json()["detail"]
    assert [(item["loc"][2:], item["msg"]) for item in detail] == [
        ([0, "RM"], "Field required"),
        ([0, "ROOMS"], "Extra inputs are not permitted"),
        ([1, "RM"], "Field required"),
        ([1, "ROOMS"], "Extra inputs are not permitted"),
    ]


def test_nullable_columns_may_be_left_out_or_null(client: TestClient) -> None:
    rows: list[dict[str, Any]] = [
        {k: v for k, v in FIRST_TRACT.items() if k not in ("LSTAT", "B")}
    ] * 3
    rows = [rows[0], {**rows[1], "CRIM": None}, rows[2]]
    split = client.post("/invocations", json={"dataframe_split": _split(rows)})
    records = client.post("/invocations", json={"dataframe_records": rows})
    assert split.status_code == 200, split.text
    assert split.json() == records.json()


@pytest.mark.parametrize(
    ("columns", "message"),
    [(["CRIM", "CRIM"], "duplicate column 'CRIM'"), (["CRIM", 7], "column names must be strings")],
)
def test_column_names_must_be_distinct_strings(
    client: TestClient, columns: list[Any], message: str
) -> None:
    body = {"dataframe_split": {"columns": columns, "data": [[1.0, 2.0]]}}
    detail = client.post("/invocations", json=body).json()["detail"]
    assert detail == [
        {"loc": ["body", "dataframe_split", "columns", 1], "msg": message,
         "type": detail[0]["type"]}
    ]  # fmt: skip


def test_a_ragged_row_is_named(client: TestClient) -> None:
    data = [list(FIRST_TRACT.values()), list(FIRST_TRACT.values())[:-1]]
    body = {"dataframe_split": {"columns": list(FIRST_TRACT), "data": data}}
    detail = client.post("/invocations", json=body).json()["detail"]
    assert detail[0]["loc"] == ["body", "dataframe_split", "data", 1]
    assert detail[0]["msg"] == f"row must be a list of {len(FIRST_TRACT)} values, one per column"


def test_columnar_predictions_are_logged_row_by_row(client: TestClient, tiny_model: Path) -> None:
    log = tiny_model / "log.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    rows: list[dict[str, Any]] = [FIRST_TRACT, {**FIRST_TRACT, "RM": 7.0, "CRIM": None}]
    response = client.post(
        "/invocations", json={"inputs": {k: [r[k] for r in rows] for k in rows[0]}}
    )
    assert response.status_code == 200
    logged = [json.loads(line) for line in log.read_text().splitlines()[before:]]
    assert [entry["inputs"] for entry in logged] == rows
    assert [entry["prediction"] for entry in logged] == response.json()["predictions"]
