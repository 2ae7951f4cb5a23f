"""The app under a real uvicorn on a loopback port, configured the way an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.schemas import FIRST_TRACT
from tests.conftest import REPO
from tools.loopback import free_port, wait_until_healthy

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "predictions.jsonl"
    env = {
        **os.environ,
        "BOSTON_API_MODEL_DIR": str(model_dir),
        "BOSTON_API_LOG_SINK": str(log),
        "BOSTON_API_API_KEY": "k",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", process, timeout=30)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=15)


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
