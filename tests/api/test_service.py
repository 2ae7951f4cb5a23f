"""Service routes and cross-cutting behaviour: health, card, metrics, docs, keys, limits, logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings


def test_health_reports_the_loaded_model(client: TestClient, model_dir: Path) -> None:
    card = json.loads((model_dir / "model_card.json").read_text())
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model_loaded": True,
        "model_version": card["model_version"],
        "reason": None,
        "failed_reload": None,
    }


def test_model_route_returns_the_card(client: TestClient, model_dir: Path) -> None:
    assert client.get("/model").json() == json.loads((model_dir / "model_card.json").read_text())


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    sent = client.post("/predict", json=FIRST_TRACT, headers={"X-Request-ID": "abc-123"})
    assert sent.headers["x-request-id"] == "abc-123"
    generated = client.post("/predict", json=FIRST_TRACT)
    assert len(generated.headers["x-request-id"]) == 32
    # a header that could forge log lines is replaced, not echoed
    forged = client.post("/predict", json=FIRST_TRACT, headers={"X-Request-ID": 'x" y'})
    assert forged.headers["x-request-id"] != 'x" y'


def test_each_prediction_is_one_json_log_line(client: TestClient, prediction_log: Path) -> None:
    client.post("/predict", json=FIRST_TRACT, headers={"X-Request-ID": "one"})
    client.post(
        "/predict/batch", json={"rows": [FIRST_TRACT, FIRST_TRACT]}, headers={"X-Request-ID": "two"}
    )
    lines = [json.loads(line) for line in prediction_log.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["one", "two", "two"]
    first = lines[0]
    assert first["event"] == "prediction"
    assert first["route"] == "/predict"
    assert first["inputs"]["RM"] == FIRST_TRACT["RM"]
    assert first["model_version"] == client.get("/health").json()["model_version"]
    assert isinstance(first["prediction"], float)
    assert first["latency_ms"] > 0


def test_sampling_rate_zero_logs_nothing(model_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "sampled.jsonl"
    app = create_app(Settings(model_dir=model_dir, log_sink=str(log), log_sample_rate=0.0))
    with TestClient(app) as client:
        assert client.post("/predict", json=FIRST_TRACT).status_code == 200
    assert log.read_text() == ""


def test_prometheus_metrics(client: TestClient) -> None:
    client.post("/predict", json=FIRST_TRACT)
    client.post("/predict", json={**FIRST_TRACT, "RM": 0})
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    bucket = 'http_request_duration_seconds_bucket{le="0.5",method="POST",route="/predict",'
    assert bucket + 'status="200"} 1.0' in text
    assert "model_prediction_medv_count 1.0" in text
    assert 'model_info{family="ridge"' in text
    assert "model_loaded 1.0" in text


def test_docs_and_redoc_are_served_without_any_cdn(client: TestClient) -> None:
    # what a browser makes of the page: tests/api/test_docs_browser.py
    html = client.get("/docs").text
    assert "http://" not in html and "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert f"/docs-assets/{asset}" in html
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    redoc = client.get("/redoc")
    assert "http://" not in redoc.text and "https://" not in redoc.text
    for asset in ("redoc.standalone.js", "favicon.png"):
        assert f"/docs-assets/{asset}" in redoc.text
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200
    # ReDoc's bundle draws a logo from its makers' CDN: the page's policy keeps fetches local
    assert redoc.headers["content-security-policy"].startswith("default-src 'self'")


def test_openapi_documents_the_card_built_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    house = spec["components"]["schemas"]["House"]
    assert house["properties"]["RM"]["minimum"] == 1.0
    assert house["additionalProperties"] is False
    assert "RM" in house["required"] and "LSTAT" not in house["required"]
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/House"}


@pytest.fixture
def keyed_client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=model_dir, log_sink=str(tmp_path / "l"), api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("route", ["/predict", "/predict/batch", "/invocations"])
def test_api_key_guards_the_prediction_routes(keyed_client: TestClient, route: str) -> None:
    assert keyed_client.post(route, json={}).status_code == 401
    assert keyed_client.post(route, json={}, headers={"X-API-Key": "wrong"}).status_code == 401
    # with the key the request reaches validation
    assert keyed_client.post(route, json={}, headers={"X-API-Key": "s3cret"}).status_code == 422


def test_api_key_leaves_health_open(keyed_client: TestClient) -> None:
    assert keyed_client.get("/health").status_code == 200
    ok = keyed_client.post("/predict", json=FIRST_TRACT, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOSTON_API_MAX_BATCH_ROWS", "7")
    monkeypatch.setenv("BOSTON_API_API_KEY", "k")
    settings = Settings()
    assert settings.max_batch_rows == 7
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    monkeypatch.setenv("BOSTON_API_LOG_SAMPLE_RATE", "2")
    with pytest.raises(ValueError, match="log_sample_rate"):
        Settings()


def test_body_cap_counts_streamed_bytes(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=model_dir, log_sink=str(tmp_path / "l"), max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        declared = client.post("/predict", content=b" " * 4096)
        assert declared.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can catch it
            for _ in range(8):
                yield b" " * 512

        streamed = client.post("/predict", content=chunks())
        assert streamed.status_code == 413
        assert streamed.json() == {"detail": "request body exceeds 2048 bytes"}
        assert client.post("/predict", json=FIRST_TRACT).status_code == 200


def test_an_unexpected_error_is_500_without_a_trace(model_dir: Path, tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=model_dir, log_sink=str(tmp_path / "l")))
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.runtime.model.pipeline.steps[-1] = ("model", None)  # breaks predict
        response = client.post("/predict", json=FIRST_TRACT, headers={"X-Request-ID": "r1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "r1"}
