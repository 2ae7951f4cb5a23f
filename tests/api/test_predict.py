"""Prediction routes with a tiny exported model: answers, strict validation, MLflow formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.schemas import FIRST_TRACT


def expected_prediction(model_dir: Path, house: dict[str, Any]) -> float:
    card = json.loads((model_dir / "model_card.json").read_text())
    pipeline = joblib.load(model_dir / card["artifact"]["file"])
    row = [[np.nan if house.get(n) is None else house[n] for n in card["model_inputs"]]]
    return float(pipeline.predict(np.array(row, dtype=float))[0])


def test_the_original_example_works_as_is(client: TestClient, model_dir: Path) -> None:
    response = client.post("/predict", json=FIRST_TRACT)
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == pytest.approx(
        expected_prediction(model_dir, FIRST_TRACT), abs=1e-9
    )
    assert body["model_version"] == client.get("/health").json()["model_version"]
    assert body["ignored_inputs"] == ["B"]


def test_b_may_be_left_out_but_not_sent_invalid(client: TestClient) -> None:
    without_b = {k: v for k, v in FIRST_TRACT.items() if k != "B"}
    assert client.post("/predict", json=without_b).status_code == 200
    assert client.post("/predict", json={**FIRST_TRACT, "B": 500}).status_code == 422
    assert client.post("/predict", json={**FIRST_TRACT, "B": None}).status_code == 422


def test_null_is_imputed_where_the_contract_allows_it(client: TestClient, model_dir: Path) -> None:
    house = {**FIRST_TRACT, "LSTAT": None, "CHAS": None}
    response = client.post("/predict", json=house)
    assert response.status_code == 200
    assert response.json()["prediction"] == pytest.approx(expected_prediction(model_dir, house))
    # leaving a nullable field out means the same as sending null
    omitted = {k: v for k, v in FIRST_TRACT.items() if k not in ("LSTAT", "CHAS")}
    assert client.post("/predict", json=omitted).json() == response.json()


def _errors(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    return {str(e["loc"][-1]): e["msg"] for e in response.json()["detail"]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("RM", 0.2, "greater than or equal to 1"),
        ("AGE", 101, "less than or equal to 100"),
        ("CHAS", 0.5, "must be 0 or 1"),
        ("RAD", 2.5, "must be a whole number"),
        ("RM", None, "valid number"),
        ("RM", "six", "valid number"),
        ("CRIM", True, "valid number"),
        ("NOX", [0.5], "valid number"),
    ],
)
def test_each_invalid_field_is_named(
    client: TestClient, field: str, value: Any, message: str
) -> None:
    errors = _errors(client.post("/predict", json={**FIRST_TRACT, field: value}))
    assert message in errors[field]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_rejected(client: TestClient, literal: str) -> None:
    body = json.dumps(FIRST_TRACT).replace('"RM": 6.575', f'"RM": {literal}')
    errors = _errors(client.post("/predict", content=body))
    assert "RM" in errors


def test_unknown_and_missing_fields_are_named(client: TestClient) -> None:
    house = {k: v for k, v in FIRST_TRACT.items() if k != "RM"} | {"ROOMS": 6}
    errors = _errors(client.post("/predict", json=house))
    assert errors["ROOMS"] == "Extra inputs are not permitted"
    assert errors["RM"] == "Field required"


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'"house"', b"null"])
def test_malformed_bodies_are_422(client: TestClient, body: bytes) -> None:
    response = client.post("/predict", content=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_batch_scores_every_row_in_order(client: TestClient, model_dir: Path) -> None:
    no_lstat = {k: v for k, v in FIRST_TRACT.items() if k != "LSTAT"}  # left out = unknown
    rows: list[dict[str, Any]] = [
        FIRST_TRACT, {**FIRST_TRACT, "RM": 8.0}, {**FIRST_TRACT, "LSTAT": None}, no_lstat
    ]  # fmt: skip
    response = client.post("/predict/batch", json={"rows": rows})
    assert response.status_code == 200
    expected = [expected_prediction(model_dir, row) for row in rows]
    assert response.json()["predictions"] == pytest.approx(expected)
    assert response.json()["predictions"][2] == response.json()["predictions"][3]


def test_batch_errors_name_the_row_and_field(client: TestClient) -> None:
    rows = [FIRST_TRACT, {**FIRST_TRACT, "TAX": -1}]
    detail = client.post("/predict/batch", json={"rows": rows}).json()["detail"]
    assert detail[0]["loc"] == ["body", "rows", 1, "TAX"]


def test_batch_row_cap_and_empty_batch(model_dir: Path, prediction_log: Path) -> None:
    from api.main import create_app
    from api.settings import Settings

    app = create_app(Settings(model_dir=model_dir, log_sink=str(prediction_log), max_batch_rows=2))
    with TestClient(app) as capped:
        detail = capped.post("/predict/batch", json={"rows": [FIRST_TRACT] * 3}).json()["detail"]
        assert detail[0]["loc"] == ["body", "rows"]
        assert "at most 2" in detail[0]["msg"]
        assert capped.post("/predict/batch", json={"rows": []}).status_code == 422
        many = {"dataframe_records": [FIRST_TRACT] * 3}
        assert "at most 2 rows" in capped.post("/invocations", json=many).text


def _mlflow_payloads() -> dict[str, Any]:
    columns = list(FIRST_TRACT)
    second = {**FIRST_TRACT, "RM": 7.5}
    return {
        "dataframe_split": {
            "dataframe_split": {
                "columns": columns,
                "data": [list(FIRST_TRACT.values()), list(second.values())],
            }
        },
        "dataframe_records": {"dataframe_records": [FIRST_TRACT, second]},
        "instances": {"instances": [FIRST_TRACT, second]},
        "inputs": {"inputs": {c: [FIRST_TRACT[c], second[c]] for c in columns}},
    }


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_invocations_accepts_every_mlflow_format(client: TestClient, fmt: str) -> None:
    response = client.post("/invocations", json=_mlflow_payloads()[fmt])
    assert response.status_code == 200, response.text
    expected = client.post(
        "/predict/batch", json={"rows": [FIRST_TRACT, {**FIRST_TRACT, "RM": 7.5}]}
    ).json()["predictions"]
    assert response.json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"records": [FIRST_TRACT]}, ["body"]),
        ({"instances": [FIRST_TRACT], "inputs": [FIRST_TRACT]}, ["body"]),
        ({"dataframe_split": {"columns": ["RM"]}}, ["body", "dataframe_split"]),
        (
            {"dataframe_split": {"columns": ["RM", "ZN"], "data": [[6.0]]}},
            ["body", "dataframe_split", "data", 0],
        ),
        (
            {"dataframe_records": [{**FIRST_TRACT, "RM": 99}]},
            ["body", "dataframe_records", 0, "RM"],
        ),
        ({"inputs": {"RM": [6.0], "ZN": [1.0, 2.0]}}, ["body", "inputs"]),
        ({"instances": "house"}, ["body", "instances"]),
        ({"instances": [FIRST_TRACT], "params": [None]}, ["body", "params"]),
        (
            {"dataframe_split": {"columns": ["RM"], "data": [[6.0]], "rows": 1}},
            ["body", "dataframe_split"],
        ),
        (
            {"dataframe_split": {"columns": ["RM"], "data": [[6.0]], "index": 0}},
            ["body", "dataframe_split", "index"],
        ),
    ],
)  # fmt: skip
def test_invocations_errors_name_the_part_at_fault(
    client: TestClient, payload: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/invocations", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_invocations_rejects_invalid_json(client: TestClient) -> None:
    response = client.post("/invocations", content=b"{not json")
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"][0]["msg"]
