"""Every way the model can be unusable: the service starts, says why, and never crashes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from artifact import PROFILE_NAME, read_card


def _edit_card(model_dir: Path, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    path = model_dir / "model_card.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


def _remove_artifact(model_dir: Path) -> None:
    (model_dir / read_card(model_dir)["artifact"]["file"]).unlink()


def _tamper_artifact(model_dir: Path) -> None:
    with (model_dir / read_card(model_dir)["artifact"]["file"]).open("ab") as artifact:
        artifact.write(b"\0")


def _other_sklearn(model_dir: Path) -> None:
    _edit_card(model_dir, lambda card: card["libraries"].update({"scikit-learn": "1.0.2"}))


def _remove_card(model_dir: Path) -> None:
    (model_dir / "model_card.json").unlink()


def _garble_card(model_dir: Path) -> None:
    (model_dir / "model_card.json").write_text("{not json")


def _card_without_features(model_dir: Path) -> None:
    _edit_card(model_dir, lambda card: card.pop("features"))


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_remove_artifact, "model artifact"),
        (_tamper_artifact, "refusing to load it"),
        (_other_sklearn, "trained with scikit-learn 1.0.2"),
        (_remove_card, "not found; run `make repro` first"),
        (_garble_card, "is unreadable"),
        (_card_without_features, "malformed card"),
    ],
)
def test_service_starts_and_answers_503_with_the_reason(
    model_dir: Path, tmp_path: Path, breakage: Callable[[Path], None], reason: str
) -> None:
    breakage(model_dir)
    app = create_app(Settings(model_dir=model_dir, log_sink=str(tmp_path / "log")))
    with TestClient(app) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["model_loaded"] is False
        assert health.json()["model_version"] is None
        assert reason in health.json()["reason"]
        for route, body in [
            ("/predict", FIRST_TRACT),
            ("/predict/batch", {"rows": [FIRST_TRACT]}),
            ("/invocations", {"dataframe_records": [FIRST_TRACT]}),
        ]:
            response = client.post(route, json=body)
            assert response.status_code == 503
            assert reason in response.json()["detail"]
        assert client.get("/model").status_code == 503
        assert "model_loaded 0.0" in client.get("/metrics").text
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


def test_without_its_reference_profile_the_model_still_serves(settings: Settings) -> None:
    """Only the live drift metrics need the profile; predictions never wait on monitoring."""
    (settings.model_dir / PROFILE_NAME).unlink()
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json=FIRST_TRACT).status_code == 200
        metrics = client.get("/metrics").text
    assert "model_input_value" not in metrics
    assert "model_prediction_medv_count 1.0" in metrics
