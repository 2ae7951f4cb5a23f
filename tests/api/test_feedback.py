"""POST /feedback: labels for served predictions, always kept, marked when unknown or repeated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings


def lines(log: Path, event: str) -> list[dict[str, Any]]:
    return [
        record
        for record in map(json.loads, log.read_text().splitlines())
        if record["event"] == event
    ]


def test_a_label_for_a_prediction_is_logged_with_its_model_version(
    client: TestClient, prediction_log: Path
) -> None:
    answer = client.post("/predict", json=FIRST_TRACT)
    request_id = answer.headers["X-Request-ID"]
    response = client.post("/feedback", json={"request_id": request_id, "actual": 24.0})
    assert response.status_code == 200
    assert response.json() == {"recorded": 1, "unknown": 0, "repeated": 0}
    (label,) = lines(prediction_log, "feedback")
    assert label == {
        "ts": label["ts"],
        "event": "feedback",
        "request_id": request_id,
        "row": 0,
        "actual": 24.0,
        "model_version": answer.json()["model_version"],
        "known": True,
        "repeated": False,
    }
    # the prediction it belongs to is in the same log, under the same id
    (prediction,) = lines(prediction_log, "prediction")
    assert prediction["request_id"] == request_id


def test_labels_for_a_batch_name_their_rows(client: TestClient, prediction_log: Path) -> None:
    answer = client.post(
        "/predict/batch", json={"rows": [FIRST_TRACT, FIRST_TRACT]}, headers={"X-Request-ID": "b-1"}
    )
    assert answer.status_code == 200
    labels = [{"request_id": "b-1", "row": row, "actual": 20.0 + row} for row in range(3)]
    response = client.post("/feedback", json=labels)
    # the batch had two rows: a label for a third is kept, and marked unknown
    assert response.json() == {"recorded": 3, "unknown": 1, "repeated": 0}
    logged = lines(prediction_log, "feedback")
    assert [(line["row"], line["actual"], line["known"]) for line in logged] == [
        (0, 20.0, True),
        (1, 21.0, True),
        (2, 22.0, False),
    ]
    assert logged[2]["model_version"] is None


def test_unknown_and_repeated_labels_are_kept_and_marked(
    client: TestClient, prediction_log: Path
) -> None:
    client.post("/predict", json=FIRST_TRACT, headers={"X-Request-ID": "sold-1"})
    first = client.post("/feedback", json={"request_id": "sold-1", "actual": 30.0})
    again = client.post("/feedback", json={"request_id": "sold-1", "actual": 31.5})
    stranger = client.post("/feedback", json={"request_id": "never-asked", "actual": 12.0})
    assert first.json() == {"recorded": 1, "unknown": 0, "repeated": 0}
    assert again.json() == {"recorded": 1, "unknown": 0, "repeated": 1}
    assert stranger.json() == {"recorded": 1, "unknown": 1, "repeated": 0}
    logged = lines(prediction_log, "feedback")
    marks = [
        (line["request_id"], line["actual"], line["known"], line["repeated"]) for line in logged
    ]
    assert marks == [
        ("sold-1", 30.0, True, False),
        ("sold-1", 31.5, True, True),
        ("never-asked", 12.0, False, False),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"request_id": "r", "actual": 50.5}, ["body", "actual"], "less than or equal to 50"),
        ({"request_id": "r", "actual": -1}, ["body", "actual"], "greater than or equal to 0"),
        ({"request_id": "r", "actual": "24"}, ["body", "actual"], "valid number"),
        ({"request_id": "r", "actual": None}, ["body", "actual"], "valid number"),
        ({"actual": 24.0}, ["body", "request_id"], "Field required"),
        ({"request_id": "r"}, ["body", "actual"], "Field required"),
        ({"request_id": "a b", "actual": 24.0}, ["body", "request_id"], "should match pattern"),
        ({"request_id": "r", "actual": 24.0, "row": -1}, ["body", "row"], "greater than or equal"),
        ({"request_id": "r", "actual": 24.0, "price": 1}, ["body", "price"], "Extra inputs"),
        ([{"request_id": "r", "actual": 24.0}, {"request_id": "r"}], ["body", 1, "actual"],
         "Field required"),
        ([], ["body"], "at least 1 item"),
    ],
)  # fmt: skip
def test_a_bad_label_is_a_422_naming_its_field_and_nothing_is_logged(
    client: TestClient, prediction_log: Path, body: Any, loc: list[Any], words: str
) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == loc
    assert words in error["msg"]
    assert not prediction_log.exists() or lines(prediction_log, "feedback") == []


def test_non_finite_actual_is_refused(client: TestClient) -> None:
    response = client.post(
        "/feedback",
        content=b'{"request_id": "r", "actual": NaN}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_feedback_needs_the_api_key_when_one_is_set(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=model_dir, log_sink=str(tmp_path / "log"), api_key="k")
    with TestClient(create_app(settings)) as client:
        label = {"request_id": "r", "actual": 24.0}
        assert client.post("/feedback", json=label).status_code == 401
        assert client.post("/feedback", json=label, headers={"X-API-Key": "k"}).status_code == 200


def test_labels_go_to_their_own_sink_when_one_is_set(model_dir: Path, tmp_path: Path) -> None:
    predictions, labels = tmp_path / "predictions.jsonl", tmp_path / "labels.jsonl"
    settings = Settings(model_dir=model_dir, log_sink=str(predictions), feedback_sink=str(labels))
    with TestClient(create_app(settings)) as client:
        request_id = client.post("/predict", json=FIRST_TRACT).headers["X-Request-ID"]
        client.post("/feedback", json={"request_id": request_id, "actual": 24.0})
    assert [line["event"] for line in map(json.loads, predictions.read_text().splitlines())] == [
        "prediction"
    ]
    (label,) = lines(labels, "feedback")
    assert label["request_id"] == request_id and label["known"] is True


def test_feedback_is_documented_with_the_cards_target_bounds(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Feedback"}
    actual = schema["components"]["schemas"]["Label"]["properties"]["actual"]
    assert (actual["minimum"], actual["maximum"]) == (0.0, 50.0)
    assert {"401", "413", "415", "422", "429", "503"} <= set(
        schema["paths"]["/feedback"]["post"]["responses"]
    )
