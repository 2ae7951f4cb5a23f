"""The API key is a declared security scheme: OpenAPI says which routes need it, when one is set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings

PROTECTED = [("/predict", "post"), ("/predict/batch", "post"), ("/invocations", "post"),
             ("/feedback", "post")]  # fmt: skip
OPEN = [("/health", "get"), ("/model", "get")]


@pytest.fixture
def keyed_document(model_dir: Path, tmp_path: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    settings = Settings(model_dir=model_dir, log_sink=str(tmp_path / "log"), api_key="k")
    with TestClient(create_app(settings)) as client:
        yield client.get("/openapi.json").json()


def test_with_a_key_the_document_declares_the_scheme_on_every_client_route(
    keyed_document: dict,  # type: ignore[type-arg]
) -> None:
    schemes = keyed_document["components"]["securitySchemes"]
    assert schemes == {
        "APIKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "the key the service was started with (BOSTON_API_API_KEY)",
        }
    }
    for path, method in PROTECTED:
        operation = keyed_document["paths"][path][method]
        assert operation["security"] == [{"APIKey": []}], path
        # the key is the scheme's, not a parameter a user types into every route
        assert not any(p["name"] == "X-API-Key" for p in operation.get("parameters", []))
    for path, method in OPEN:
        assert "security" not in keyed_document["paths"][path][method], path


def test_without_a_key_the_document_shows_every_route_open(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "securitySchemes" not in document.get("components", {})
    for path, method in PROTECTED + OPEN:
        assert "security" not in document["paths"][path][method], path
