"""The app under a real uvicorn on a loopback port, configured the way an operator would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.schemas import FIRST_TRACT
from tests.conftest import running_api

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "predictions.jsonl"
    with running_api(model_dir, log, api_key="k") as url:
        yield url, log


def test_real_server_serves_predictions(server: tuple[str, Path]) -> None:
    url, log = server
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert health.json()["model_loaded"] is True
    headers = {"X-API-Key": "k", "X-Request-ID": "e2e-1"}
    response = httpx.post(f"{url}/predict", json=FIRST_TRACT, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "e2e-1"
    assert 0 < response.json()["prediction"] < 60
    assert httpx.post(f"{url}/predict", json=FIRST_TRACT).status_code == 401
    invalid = httpx.post(f"{url}/predict", json={**FIRST_TRACT, "CHAS": 3}, headers=headers)
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "CHAS"]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["request_id"] for entry in logged] == ["e2e-1"]
    assert "http_requests_total" in httpx.get(f"{url}/metrics").text
