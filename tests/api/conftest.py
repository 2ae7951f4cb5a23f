from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings


@pytest.fixture
def prediction_log(tmp_path: Path) -> Path:
    return tmp_path / "predictions.jsonl"


@pytest.fixture
def settings(model_dir: Path, prediction_log: Path) -> Settings:
    return Settings(model_dir=model_dir, log_sink=str(prediction_log))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
