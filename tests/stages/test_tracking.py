"""The MLflow record of a pipeline run, checked in a real local store and on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from stages import tracking
from tests.conftest import export_tiny_model, synthetic_table
from tests.servers import running_mlflow

PARAMS: dict[str, Any] = {
    "seed": 42,
    "model": {"family": "auto", "alpha": 1.0},
    "export": {"experiment": "test-exp", "registered_model": "test-model", "alias": "champion"},
}


def _record(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    model_dir = tmp_path / "models"
    card = export_tiny_model(model_dir)
    train = tmp_path / "train.csv"
    synthetic_table(10).to_csv(train, index=False)
    plot = tmp_path / "leaderboard.csv"
    plot.write_text("family,cv_rmse_mean\nridge,1.0\n")
    tune_report = {
        "search": "grid",
        "families": {
            "ridge": {"cv_rmse_mean": 1.0, "best_params": {"spline_knots": 4}, "trees": None}
        },
    }
    trials = pd.DataFrame(
        {
            "family": ["ridge", "ridge"],
            "trial": [0, 1],
            "state": ["complete", "pruned"],
            "folds": [3, 1],
            "cv_rmse_mean": [1.0, 1.5],
            "params": ['{"spline_knots": 4}', '{"spline_knots": 6}'],
        }
    )
    run_id = tracking.record_run(
        model=joblib.load(model_dir / card["artifact"]["file"]),
        card=card,
        params=PARAMS,
        tune_report=tune_report,
        train_path=train,
        plots=[plot],
        trials=trials,
    )
    return run_id, card


def _check_record(run_id: str, card: dict[str, Any]) -> None:
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["model.alpha"] == "1.0"
    assert run.data.params["export.registered_model"] == "test-model"
    assert run.data.metrics["test_rmse"] == 1.0
    assert run.data.metrics["cv_cv_rmse_mean"] == 1.0
    assert run.data.tags["model_version"] == card["model_version"]
    assert run.data.tags["data_md5"] == card["training_data"]["md5"]
    assert "git_commit" in run.data.tags
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert [child.data.tags["family"] for child in children] == ["ridge"]
    assert children[0].data.metrics["cv_rmse_mean"] == 1.0
    assert children[0].data.tags["search"] == "grid"
    # the family's study: every candidate with its params, score and whether it was pruned
    table = mlflow.load_table("trials.json", run_ids=[children[0].info.run_id])
    assert table.state.tolist() == ["complete", "pruned"]
    assert table.params.tolist() == ['{"spline_knots": 4}', '{"spline_knots": 6}']
    artifacts = {item.path for item in client.list_artifacts(run_id)}
    assert {"plots", "model_card.json"} <= artifacts
    version = client.get_model_version_by_alias("test-model", "champion")
    assert version.run_id == run_id
    assert version.tags["model_version"] == card["model_version"]
    # the logged model loads back through MLflow (skops with the trusted types) and predicts
    loaded = mlflow.pyfunc.load_model("models:/test-model@champion")
    features = card["model_inputs"]
    predictions = loaded.predict(synthetic_table(3)[features])
    assert len(predictions) == 3
    signature = loaded.metadata.signature
    assert signature is not None
    inputs = {spec.name: spec.required for spec in signature.inputs.inputs}
    assert inputs["LSTAT"] is False and inputs["RM"] is True


def test_default_store_is_sqlite_at_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    # `dvc exp run --temp` runs in a copy; DVC_ROOT points back at the real repository
    monkeypatch.setenv("DVC_ROOT", "/somewhere/repo")
    assert tracking.tracking_uri() == "sqlite:////somewhere/repo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_a_run_is_recorded_in_the_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run_id, card = _record(tmp_path)
    assert (tmp_path / "mlflow.db").is_file()
    # artifacts are pinned to the repository, not to the working directory
    assert (tmp_path / "mlruns").is_dir()
    _check_record(run_id, card)


def test_flatten() -> None:
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": 3}) == {
        "a.b": 1,
        "a.c.d": [2],
        "e": 3,
    }


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    store = f"sqlite:///{tmp_path / 'server.db'}"
    with running_mlflow(store, tmp_path / "server-artifacts") as url:
        yield url


@pytest.mark.e2e
def test_tracking_uri_points_runs_at_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    run_id, card = _record(tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
    _check_record(run_id, card)
    assert any((tmp_path / "server-artifacts").rglob("model_card.json"))
