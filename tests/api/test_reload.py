"""Swapping the served model without a restart: POST /admin/reload and SIGHUP.

The model folder is replaced the way a deploy replaces it (new artifact, profile and card), then the
service is asked to reload. Every response must come wholly from one model, a refused model must
leave the old one serving and say why, and under load no request may fail.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from artifact import read_card
from stages.contract import model_features
from tests.conftest import export_tiny_model, running_api, running_server
from tools.loopback import free_port

ADMIN = {"X-Admin-Key": "let-me-reload"}
CARD = "model_card.json"


def install(source: Path, target: Path) -> None:
    """Put the model exported in `source` into the folder the service serves, card last."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir(), key=lambda path: path.name == CARD):
        shutil.copy2(path, target / path.name)


def version_of(folder: Path) -> str:
    return str(json.loads((folder / CARD).read_text())["model_version"])


def expected_prediction(folder: Path) -> float:
    """What the model exported in `folder` predicts for the first tract, computed offline."""
    pipeline = joblib.load(folder / read_card(folder)["artifact"]["file"])
    row = [[FIRST_TRACT[name] for name in model_features(["B"])]]
    return float(pipeline.predict(np.array(row, dtype=np.float64))[0])


@pytest.fixture
def second_model(tmp_path: Path) -> Path:
    """Another model of the same contract, as a retraining would export it."""
    folder = tmp_path / "challenger"
    export_tiny_model(folder, family="lasso")
    return folder


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[TestClient]:
    admin_settings = Settings(**{**settings.model_dump(), "admin_key": "let-me-reload"})
    with TestClient(create_app(admin_settings)) as test_client:
        yield test_client


def test_without_an_admin_key_the_route_does_not_exist(client: TestClient) -> None:
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 404
    assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def test_the_model_is_left_out_of_full_collections_and_a_replaced_one_is_freed(
    admin_client: TestClient, model_dir: Path, second_model: Path
) -> None:
    """The loaded heap is frozen (api/runtime.py), and a reload does not leak the old model."""
    assert gc.get_freeze_count() > 0
    runtime = admin_client.app.state.runtime  # type: ignore[attr-defined]
    replaced = weakref.ref(runtime.model.pipeline)
    install(second_model, model_dir)
    assert admin_client.post("/admin/reload", headers=ADMIN).status_code == 200
    assert replaced() is None
    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "guess"}, {"X-API-Key": "let-me-reload"}])
def test_reload_needs_the_admin_key(admin_client: TestClient, headers: dict[str, str]) -> None:
    response = admin_client.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "missing or wrong X-Admin-Key header"


def test_reload_swaps_in_the_folders_new_model(
    admin_client: TestClient, model_dir: Path, second_model: Path
) -> None:
    old, new = version_of(model_dir), version_of(second_model)
    assert old != new
    install(second_model, model_dir)
    response = admin_client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert (body["previous_version"], body["model_version"]) == (old, new)
    assert body["changed"] is True and body["error"] is None
    answer = admin_client.post("/predict", json=FIRST_TRACT).json()
    assert answer["model_version"] == new
    assert answer["prediction"] == pytest.approx(expected_prediction(second_model), abs=1e-9)
    assert admin_client.get("/health").json()["model_version"] == new
    assert admin_client.get("/model").json()["model_version"] == new
    metrics = admin_client.get("/metrics").text
    assert f'model_info{{family="lasso",model_version="{new}"}} 1.0' in metrics
    assert f'model_info{{family="ridge",model_version="{old}"}} 0.0' in metrics


def test_reloading_the_model_already_serving_changes_nothing(
    admin_client: TestClient, model_dir: Path
) -> None:
    response = admin_client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert response.json()["model_version"] == version_of(model_dir)


def _corrupt_artifact(folder: Path) -> str:
    with (folder / read_card(folder)["artifact"]["file"]).open("ab") as artifact:
        artifact.write(b"tampered")
    return "sha256"


def _other_library(folder: Path) -> str:
    card = json.loads((folder / CARD).read_text())
    card["libraries"]["scikit-learn"] = "0.24.2"
    (folder / CARD).write_text(json.dumps(card))
    return "scikit-learn 0.24.2"


def _no_card(folder: Path) -> str:
    (folder / CARD).unlink()
    return CARD


@pytest.mark.parametrize("breakage", [_corrupt_artifact, _other_library, _no_card])
def test_a_refused_model_leaves_the_old_one_serving_and_says_why(
    admin_client: TestClient, model_dir: Path, second_model: Path, breakage: Any
) -> None:
    old = version_of(model_dir)
    before = admin_client.post("/predict", json=FIRST_TRACT).json()
    install(second_model, model_dir)
    words = breakage(model_dir)
    response = admin_client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409
    body = response.json()
    assert words in body["error"]
    assert (body["model_version"], body["previous_version"], body["changed"]) == (old, old, False)
    assert admin_client.post("/predict", json=FIRST_TRACT).json() == before
    health = admin_client.get("/health")
    assert health.status_code == 200
    assert health.json()["model_version"] == old
    assert health.json()["failed_reload"]["error"] == body["error"]
    # fixed, the next reload serves it and the failure is cleared
    install(second_model, model_dir)
    assert admin_client.post("/admin/reload", headers=ADMIN).status_code == 200
    health = admin_client.get("/health").json()
    assert health["model_version"] == version_of(second_model)
    assert health["failed_reload"] is None


def test_a_service_started_without_a_model_serves_once_one_is_reloaded(
    tmp_path: Path, second_model: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = Settings(model_dir=empty, log_sink=str(tmp_path / "log"), admin_key="let-me-reload")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 503
        refused = client.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 409 and CARD in refused.json()["error"]
        # nothing served before, so the failure is the reason /health gives, not a failed reload
        assert client.get("/health").json()["failed_reload"] is None
        install(second_model, empty)
        loaded = client.post("/admin/reload", headers=ADMIN)
        assert loaded.status_code == 200
        assert loaded.json()["previous_version"] is None
        answer = client.post("/predict", json=FIRST_TRACT)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == version_of(second_model)
        schema = client.get("/openapi.json").json()
        assert "House" in schema["components"]["schemas"]


class Traffic:
    """Clients predicting without pause until stopped, each on new connections now and then so
    that every worker gets some; every answer's status, version and prediction is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.answers: list[tuple[int, str | None, float | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self) -> None:
        while not self._stop.is_set():
            with httpx.Client(base_url=self.url, timeout=10) as session:
                for _ in range(20):
                    try:
                        response = session.post("/predict", json=FIRST_TRACT)
                    except httpx.HTTPError as error:
                        self.errors.append(repr(error))
                        continue
                    body = response.json() if response.status_code == 200 else {}
                    self.answers.append(
                        (response.status_code, body.get("model_version"), body.get("prediction"))
                    )

    def versions_since(self, start: int) -> Counter[str | None]:
        return Counter(version for _, version, _ in self.answers[start:])


def assert_whole_answers(traffic: Traffic, predictions: dict[str, float]) -> None:
    """No failure, and each answer's prediction is the one its own version's model gives."""
    assert traffic.errors == []
    assert {status for status, _, _ in traffic.answers} == {200}
    for _, version, prediction in traffic.answers:
        assert version in predictions
        assert prediction == pytest.approx(predictions[version], abs=1e-9)


def wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the service did not follow in time"
        time.sleep(0.1)


@pytest.mark.e2e
def test_two_workers_swap_under_load_on_one_admin_request(
    model_dir: Path, second_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the workers' shared folder, made by the app
    old, new = version_of(model_dir), version_of(second_model)
    predictions = {old: expected_prediction(model_dir), new: expected_prediction(second_model)}
    with (
        running_api(
            model_dir, tmp_path / "log.jsonl", uvicorn_args=("--workers", "2"),
            admin_key="let-me-reload",
        ) as url,
        Traffic(url) as traffic,
    ):  # fmt: skip
        wait_for(lambda: len(traffic.answers) > 200)
        install(second_model, model_dir)
        # one worker reloads now; the other finds it published within a second
        reloaded = httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=30)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["model_version"] == new
        time.sleep(2.5)
        mark = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) > mark + 200)
        after = traffic.versions_since(mark)
        # each on a new connection: whichever worker answers serves the new model
        assert _every_worker_serves(url, new)
    assert_whole_answers(traffic, predictions)
    assert traffic.versions_since(0)[old] > 0
    assert after == Counter({new: after[new]})


@pytest.mark.e2e
def test_sighup_to_the_launcher_reloads_every_worker_and_a_refused_model_changes_nothing(
    model_dir: Path, second_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    old, new = version_of(model_dir), version_of(second_model)
    predictions = {old: expected_prediction(model_dir), new: expected_prediction(second_model)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "WEB_CONCURRENCY": "2", "BOSTON_API_PORT": str(port),
        "BOSTON_API_MODEL_DIR": str(model_dir), "BOSTON_API_LOG_SINK": str(tmp_path / "log"),
    }  # fmt: skip
    command = [sys.executable, "-m", "api"]
    with (
        running_server(command, f"{url}/health", tmp_path / "server.out", env) as server,
        Traffic(url) as traffic,
    ):
        wait_for(lambda: len(traffic.answers) > 200)
        install(second_model, model_dir)
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: _every_worker_serves(url, new))
        # a broken model next: both workers refuse it and keep serving the good one
        _corrupt_artifact(model_dir)
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: _every_worker_reports_a_failed_reload(url))
        mark = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) > mark + 200)
        assert traffic.versions_since(mark) == Counter({new: len(traffic.answers) - mark})
        assert server.poll() is None
    assert_whole_answers(traffic, predictions)
    assert traffic.versions_since(0)[old] > 0


def _every_worker_serves(url: str, version: str) -> bool:
    return all(httpx.get(f"{url}/health").json()["model_version"] == version for _ in range(20))


def _every_worker_reports_a_failed_reload(url: str) -> bool:
    answers = [httpx.get(f"{url}/health").json() for _ in range(20)]
    return all(
        answer["failed_reload"] is not None and "sha256" in answer["failed_reload"]["error"]
        for answer in answers
    )


@pytest.mark.e2e
def test_sighup_reloads_a_single_worker_server(
    model_dir: Path, second_model: Path, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BOSTON_API_MODEL_DIR": str(model_dir), "BOSTON_API_PORT": str(port),
           "BOSTON_API_LOG_SINK": str(tmp_path / "log")}  # fmt: skip
    with running_server([sys.executable, "-m", "api"], f"{url}/health", tmp_path / "out", env) as (
        server
    ):
        install(second_model, model_dir)
        server.send_signal(signal.SIGHUP)
        wait_for(
            lambda: httpx.get(f"{url}/health").json()["model_version"] == version_of(second_model)
        )
        assert server.poll() is None
