"""MLflow's scoring protocol as `mlflow models serve` speaks it, driven by MLflow's own client."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from api.schemas import FIRST_TRACT
from tests.conftest import running_api


def test_ping_answers_like_mlflow_once_a_model_serves(client: TestClient) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.text == "\n"
    assert client.get("/version").text == client.app.version  # type: ignore[attr-defined]


def test_ping_is_503_with_the_reason_without_a_model(tmp_path: Path) -> None:
    from api.main import create_app
    from api.settings import Settings

    app = create_app(Settings(model_dir=tmp_path / "empty", log_sink=str(tmp_path / "log")))
    with TestClient(app) as client:
        response = client.get("/ping")
    assert response.status_code == 503
    assert "model not loaded" in response.text


@pytest.mark.e2e
def test_mlflows_own_client_waits_for_the_service_and_scores(
    model_dir: Path, tmp_path: Path
) -> None:
    frame = pd.DataFrame([FIRST_TRACT, {**FIRST_TRACT, "RM": 7.5}])
    with running_api(model_dir, tmp_path / "log.jsonl") as url:
        # MLflow's client is unannotated
        client = ScoringServerClient("127.0.0.1", int(url.rsplit(":", 1)[1]))  # type: ignore[no-untyped-call]
        client.wait_server_ready(timeout=30)  # type: ignore[no-untyped-call]
        assert client.get_version() == "1.0.0"  # type: ignore[no-untyped-call]
        answer = client.invoke(frame).get_predictions()
        direct = httpx.post(f"{url}/predict/batch", json={"rows": frame.to_dict("records")})
    predictions = np.asarray(answer, dtype=float).ravel()
    assert predictions.tolist() == pytest.approx(direct.json()["predictions"])
