"""The MLflow record of one pipeline run: params, leaderboard, test metrics (the intervals' coverage
and width among them), plots and the model.

The default store is `sqlite:///mlflow.db` at the repository root; `MLFLOW_TRACKING_URI` overrides
it. DVC sets DVC_ROOT to the parent repository for `dvc exp run --temp` and `--queue`, so those runs
land in the same store as workspace runs instead of a throw-away copy.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import skops.io
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from sklearn.pipeline import Pipeline

from stages.files import read_table


def repository_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repository_root() / 'mlflow.db'}"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: MLflow params and metrics are flat."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def signature(card: dict[str, Any]) -> ModelSignature:
    """Built from the card's feature contract, so gap-tolerant columns are optional here too."""
    nullable = {feature["name"]: feature["nullable"] for feature in card["features"]}
    inputs = Schema(
        [ColSpec("double", name, required=not nullable[name]) for name in card["model_inputs"]]
    )
    outputs = Schema([ColSpec("double", card["target"]["name"])])
    return ModelSignature(inputs=inputs, outputs=outputs)


def record_run(
    *,
    model: Pipeline,
    card: dict[str, Any],
    params: dict[str, Any],
    tune_report: dict[str, Any],
    train_path: Path,
    plots: list[Path],
    trials: pd.DataFrame,
) -> str:
    """Log one run (with a nested run per family, holding its search's candidates as a table) and
    register the model; return the run id."""
    settings = params["export"]
    mlflow.set_tracking_uri(tracking_uri())
    _use_experiment(settings["experiment"])
    run_name = os.environ.get("DVC_EXP_NAME") or f"{card['family']}-{card['model_version']}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({key: str(value) for key, value in flatten(params).items()})
        mlflow.set_tags(_tags(card))
        # test_rmse, cv_cv_rmse_mean, intervals_coverage, intervals_by_predicted_third.high.coverage
        mlflow.log_metrics(
            {
                f"{stage}_{name}": float(value)
                for stage, figures in card["metrics"].items()
                for name, value in flatten(figures).items()
                if isinstance(value, int | float)
            }
        )
        for family, entry in tune_report["families"].items():
            with mlflow.start_run(run_name=family, nested=True):
                mlflow.log_params({key: str(value) for key, value in entry["best_params"].items()})
                mlflow.log_metrics({k: v for k, v in entry.items() if k.startswith("cv_")})
                if entry["trees"] is not None:
                    mlflow.log_metric("trees", entry["trees"])
                mlflow.set_tags({"family": family, "search": tune_report["search"]})
                mlflow.log_table(trials[trials.family == family], artifact_file="trials.json")
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_dict(card, "model_card.json")
        example = read_table(train_path)[card["model_inputs"]].head(5)
        with warnings.catch_warnings():
            # MLflow scores the named-column example to check it; the Pipeline was fitted on the
            # contract's arrays, in the same column order, so the names carry nothing to check
            warnings.filterwarnings("ignore", "X has feature names", UserWarning)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature(card),
                input_example=example,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=_types_to_trust(model),
                registered_model_name=settings["registered_model"],
            )
        client = MlflowClient()
        version = str(info.registered_model_version)
        client.set_registered_model_alias(settings["registered_model"], settings["alias"], version)
        client.set_model_version_tag(
            settings["registered_model"], version, "model_version", card["model_version"]
        )
        return str(run.info.run_id)


def _types_to_trust(model: Pipeline) -> list[str]:
    # skops refuses types beyond its safe defaults (trees, splines, dtypes) unless named. This model
    # is the one the pipeline just fitted, so the types it holds are the ones to name.
    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _use_experiment(name: str) -> None:
    # Pin artifacts to the repository: MLflow's default is relative to the working directory,
    # which for `dvc exp run --temp` is a folder deleted after the run.
    if mlflow.get_experiment_by_name(name) is None and "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.create_experiment(name, artifact_location=(repository_root() / "mlruns").as_uri())
    mlflow.set_experiment(name)


def _tags(card: dict[str, Any]) -> dict[str, str]:
    tags = {
        "model_version": card["model_version"],
        "family": card["family"],
        "data_md5": card["training_data"]["md5"],
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }
    for variable in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(variable):
            tags[variable.lower()] = os.environ[variable]
    return tags


def _git(*args: str) -> str:
    completed = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"
