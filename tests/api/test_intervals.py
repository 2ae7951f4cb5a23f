"""Conformal intervals, served wherever a prediction is: /predict, /predict/batch, /invocations
(when MLflow's `params` asks), the OpenAPI document and the prediction log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from conformal import Intervals
from prediction_log import Prediction, Skipped, read_records
from tests.conftest import synthetic_table

SECOND_TRACT = {**FIRST_TRACT, "RM": 7.185, "LSTAT": 4.03, "AGE": 61.1}


def calibration(model_dir: Path) -> Intervals:
    card = json.loads((model_dir / "model_card.json").read_text())
    return Intervals.from_dict(card["intervals"])


def edit_intervals(model_dir: Path, **changes: Any) -> None:
    path = model_dir / "model_card.json"
    card = json.loads(path.read_text())
    card["intervals"].update(changes)
    path.write_text(json.dumps(card))


def as_answered(intervals: Intervals, prediction: float) -> dict[str, Any]:
    lower, upper, censored = intervals.one(prediction)
    return {"lower": lower, "upper": upper, "level": 0.9, "upper_censored": censored}


def test_predict_answers_the_cards_interval_around_the_price(
    client: TestClient, model_dir: Path
) -> None:
    body = client.post("/predict", json=FIRST_TRACT).json()
    interval = body["interval"]
    assert interval == as_answered(calibration(model_dir), body["prediction"])
    assert interval["lower"] < body["prediction"] < interval["upper"]
    assert interval["upper_censored"] is False


def test_an_upper_bound_past_the_top_price_is_served_as_50_and_open_ended(
    model_dir: Path, settings: Settings
) -> None:
    edit_intervals(model_dir, half_widths=[40.0, 40.0, 40.0])
    with TestClient(create_app(settings)) as client:
        body = client.post("/predict", json=FIRST_TRACT).json()
    assert body["interval"]["upper"] == 50.0
    assert body["interval"]["upper_censored"] is True
    assert body["interval"]["lower"] == pytest.approx(body["prediction"] - 40.0)


def test_batch_answers_one_interval_per_row(client: TestClient, model_dir: Path) -> None:
    rows = [FIRST_TRACT, SECOND_TRACT, FIRST_TRACT]
    body = client.post("/predict/batch", json={"rows": rows}).json()
    intervals = calibration(model_dir)
    assert body["intervals"] == [as_answered(intervals, p) for p in body["predictions"]]
    # the column-wise check of a uniform batch and the row schema give the same answer
    mixed = [FIRST_TRACT, {k: v for k, v in SECOND_TRACT.items() if k != "B"}]
    assert (
        client.post("/predict/batch", json={"rows": mixed}).json()["intervals"][0]
        == (body["intervals"][0])
    )


def test_invocations_keeps_mlflows_answer_unless_params_ask(
    client: TestClient, model_dir: Path
) -> None:
    columns = list(FIRST_TRACT)
    split = {"columns": columns, "data": [list(FIRST_TRACT.values()), list(SECOND_TRACT.values())]}
    plain = client.post("/invocations", json={"dataframe_split": split})
    assert plain.status_code == 200
    assert set(plain.json()) == {"predictions"}
    asked = client.post(
        "/invocations", json={"dataframe_split": split, "params": {"intervals": True}}
    ).json()
    assert asked["predictions"] == plain.json()["predictions"]
    intervals = calibration(model_dir)
    assert asked["intervals"] == [as_answered(intervals, p) for p in asked["predictions"]]
    records = client.post(
        "/invocations", json={"dataframe_records": [FIRST_TRACT], "params": {"intervals": False}}
    )
    assert set(records.json()) == {"predictions"}


def test_invocations_names_a_params_intervals_that_is_not_a_boolean(client: TestClient) -> None:
    response = client.post(
        "/invocations", json={"dataframe_records": [FIRST_TRACT], "params": {"intervals": "yes"}}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "params", "intervals"]
    assert error["msg"] == "must be true or false"


def test_a_model_exported_before_intervals_answers_null(
    model_dir: Path, settings: Settings
) -> None:
    path = model_dir / "model_card.json"
    card = json.loads(path.read_text())
    del card["intervals"]
    path.write_text(json.dumps(card))
    with TestClient(create_app(settings)) as client:
        one = client.post("/predict", json=FIRST_TRACT).json()
        batch = client.post("/predict/batch", json={"rows": [FIRST_TRACT]}).json()
        asked = client.post(
            "/invocations", json={"dataframe_records": [FIRST_TRACT], "params": {"intervals": True}}
        ).json()
    assert one["interval"] is None
    assert batch["intervals"] is None
    assert set(asked) == {"predictions"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"method": "split"}, "intervals method 'split'"),
        ({"half_widths": [1.0]}, "one half-width more than edges"),
    ],
)
def test_a_card_with_unusable_intervals_is_not_served(
    model_dir: Path, settings: Settings, changes: dict[str, Any], reason: str
) -> None:
    edit_intervals(model_dir, **changes)
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert client.post("/predict", json=FIRST_TRACT).status_code == 503
    assert health.status_code == 503
    assert "malformed card: its intervals are unusable" in health.text
    assert reason in health.text


def test_the_prediction_log_records_each_rows_bounds(
    client: TestClient, prediction_log: Path
) -> None:
    one = client.post("/predict", json=FIRST_TRACT).json()
    batch = client.post("/predict/batch", json={"rows": [FIRST_TRACT, SECOND_TRACT]}).json()
    client.post("/invocations", json={"dataframe_records": [SECOND_TRACT]})  # not asked: logged
    skipped = Skipped()
    logged = [r for r in read_records([prediction_log], skipped) if isinstance(r, Prediction)]
    assert skipped.count == 0
    assert len(logged) == 4
    served = [one["interval"], *batch["intervals"]]
    for record, interval in zip(logged, served, strict=False):
        assert record.interval is not None
        assert record.level == 0.9
        assert record.interval._asdict() == {k: v for k, v in interval.items() if k != "level"}
    assert logged[3].interval is not None


def test_openapi_describes_the_interval(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    interval = schemas["PriceInterval"]
    assert set(interval["required"]) == {"lower", "upper", "level", "upper_censored"}
    assert "open-ended" in interval["properties"]["upper_censored"]["description"]
    refs = json.dumps(schemas["Prediction"]["properties"]["interval"])
    assert "#/components/schemas/PriceInterval" in refs
    batch = json.dumps(schemas["BatchPrediction"]["properties"]["intervals"])
    assert "#/components/schemas/PriceInterval" in batch
    mlflow = json.dumps(schemas["Predictions"]["properties"]["intervals"])
    assert "#/components/schemas/PriceInterval" in mlflow


def test_intervals_cover_the_tiny_models_own_training_rows_about_as_calibrated(
    client: TestClient, model_dir: Path
) -> None:
    # the card was calibrated on out-of-fold residuals of these 80 rows: served in-sample, the
    # intervals hold at least the calibrated share of them (in-sample errors are smaller)
    table = synthetic_table(80, seed=1)
    rows = json.loads(table.drop(columns=["MEDV"]).to_json(orient="records"))
    body = client.post("/predict/batch", json={"rows": rows}).json()
    lower = np.array([i["lower"] for i in body["intervals"]])
    upper = np.array([i["upper"] for i in body["intervals"]])
    inside = (table["MEDV"].to_numpy() >= lower) & (table["MEDV"].to_numpy() <= upper)
    assert inside.mean() >= 0.9
