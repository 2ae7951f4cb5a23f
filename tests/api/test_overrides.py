"""The service routes through FastAPI dependency overrides: their logic, without loading a model.

Real broken model folders are served in test_unavailable.py.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.dependencies import get_model, get_runtime
from api.main import create_app
from api.model_store import ServedModel
from api.observability import Metrics
from api.runtime import Runtime
from api.settings import Settings
from prediction_log import PredictionLog


def _idle_runtime(settings: Settings) -> Runtime:
    log = PredictionLog("stderr", 1.0)  # nothing is predicted, so nothing is written
    return Runtime(
        settings=settings, metrics=Metrics(), log=log, feedback_log=log, reason="maintenance window"
    )


def test_health_and_card_report_a_runtime_without_a_model(settings: Settings) -> None:
    app = create_app(settings)
    idle = _idle_runtime(settings)
    app.dependency_overrides[get_runtime] = lambda: idle
    with TestClient(app) as client:  # the lifespan loads the real model; the override wins
        health = client.get("/health")
        card = client.get("/model")
    assert health.status_code == 503
    assert health.json() == {
        "status": "unavailable",
        "model_loaded": False,
        "model_version": None,
        "reason": "maintenance window",
        "failed_reload": None,
    }
    assert card.status_code == 503
    assert card.json()["detail"] == "model not loaded: maintenance window"


def test_model_route_returns_whatever_card_the_model_carries(settings: Settings) -> None:
    app = create_app(settings)
    card = {"model_version": "0123456789ab", "family": "ridge", "schema_version": 1}
    app.dependency_overrides[get_model] = lambda: ServedModel(pipeline=None, card=card)
    with TestClient(app) as client:
        response = client.get("/model")
    assert response.status_code == 200
    assert response.json() == card
