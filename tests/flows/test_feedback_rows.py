"""Labelled predictions from the service's own logs, as new rows in the raw data's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from flows.retrain import feedback_rows
from stages.contract import COLUMNS, TARGET
from stages.ingest import read_raw, validate


def test_labelled_predictions_become_rows_and_incomplete_ones_are_named(
    model_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "service.jsonl"
    without_b = {name: value for name, value in FIRST_TRACT.items() if name != "B"}
    with TestClient(create_app(Settings(model_dir=model_dir, log_sink=str(log)))) as client:
        ids = []
        for house in (FIRST_TRACT, {**FIRST_TRACT, "RM": 7.1}, without_b):
            ids.append(client.post("/predict", json=house).headers["X-Request-ID"])
        labels = [
            {"request_id": request_id, "actual": 20.0 + i} for i, request_id in enumerate(ids)
        ]
        labels.append({"request_id": "never-served", "actual": 30.0})
        assert client.post("/feedback", json=labels).status_code == 200
    path, note = feedback_rows([log], tmp_path / "rows.csv")
    assert note == "2 labelled predictions from 1 log(s); 1 left out, their requests lacked B"
    rows = validate(read_raw(path), correct_medv=False)  # ingest's own rules accept them
    assert list(rows.columns) == [column.name for column in COLUMNS]
    assert rows[TARGET.name].tolist() == [20.0, 21.0]
    assert rows["RM"].tolist() == [FIRST_TRACT["RM"], 7.1]
    expected = pd.Series([FIRST_TRACT["LSTAT"]] * 2, name="LSTAT")
    pd.testing.assert_series_equal(rows["LSTAT"], expected)
    assert json.loads(log.read_text().splitlines()[-1])["known"] is False
