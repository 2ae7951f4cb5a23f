"""The MLflow side of a retraining: where runs are tracked, the registry aliases `champion` and
`previous` that say which version serves and which served before, and one MLflow run per decision.

Models are found in the registry by the `model_version` tag export sets, the same version the
card carries, so the flow never needs to know a registry version number in advance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.decisions import Comparison

EXPERIMENT = "boston-housing-retrain"


def tracking_uri(repo: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the repository's own SQLite store (as the stages use)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo / 'mlflow.db'}"


def tracking_env(repo: Path) -> dict[str, str]:
    """The environment under which the stages in a worktree record to the repository's MLflow
    store, not the worktree's (a tracking server, when MLFLOW_TRACKING_URI names one, keeps its
    own artifacts)."""
    uri = tracking_uri(repo)
    if "MLFLOW_TRACKING_URI" not in os.environ:
        # the local store's artifacts go under the repository, not the worktree deleted after
        mlflow.set_tracking_uri(uri)
        experiment = yaml.safe_load((repo / "params.yaml").read_text())["export"]["experiment"]
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=(repo / "mlruns").as_uri())
    return {"MLFLOW_TRACKING_URI": uri}


class Registry:
    """The registry's view of two models by their cards' `model_version`: the one `serving` now
    and the `incoming` one (the challenger, or the earlier model a rollback restores). Either is
    None when that model has no registry version."""

    def __init__(self, repo: Path, name: str, serving: str, incoming: str) -> None:
        mlflow.set_tracking_uri(tracking_uri(repo))
        self.client, self.name = MlflowClient(), name
        self.serving, self.incoming = self._version(serving), self._version(incoming)

    def _version(self, model_version: str) -> str | None:
        found = self.client.search_model_versions(
            f"name = '{self.name}' and tag.model_version = '{model_version}'"
        )
        return max((v.version for v in found), key=int) if found else None

    def promote(self) -> str:
        """`champion` to the incoming model, `previous` to the one it replaces; what was done."""
        if self.incoming is not None:
            self.client.set_registered_model_alias(self.name, "champion", self.incoming)
        if self.serving is None:
            return "the model served before has no registry version: no `previous` alias set"
        self.client.set_registered_model_alias(self.name, "previous", self.serving)
        return f"registry: champion -> version {self.incoming}, previous -> {self.serving}"

    def reject(self, reason: str) -> None:
        """The incoming model's version keeps the reason it was not promoted."""
        if self.incoming is not None:
            self.client.set_model_version_tag(self.name, self.incoming, "rejected", reason)

    def roll_back(self) -> None:
        """`champion` back to the incoming (earlier) model; the one leaving is tagged
        `rolled_back`, and `previous` no longer names anything to go back to."""
        if self.incoming is not None:
            self.client.set_registered_model_alias(self.name, "champion", self.incoming)
        if self.serving is not None:
            self.client.set_model_version_tag(self.name, self.serving, "rolled_back", "true")
        with contextlib.suppress(MlflowException):
            self.client.delete_registered_model_alias(self.name, "previous")


def record_decision(
    repo: Path,
    settings: Mapping[str, object],
    promoted: bool,
    reason: str,
    comparison: Comparison | None = None,
    champion: str | None = None,
    challenger: str | None = None,
) -> None:
    """One MLflow run per decision: the run's settings and the two versions as params, the
    comparison's figures as metrics (none when the pipeline's gate refused the challenger before
    any comparison), the decision and its reason as tags."""
    mlflow.set_tracking_uri(tracking_uri(repo))
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"retrain-{challenger or 'gated'}-vs-{champion or 'served'}"):
        params = {**settings, "champion": champion, "challenger": challenger}
        mlflow.log_params({name: value for name, value in params.items() if value is not None})
        if comparison is not None:
            mlflow.log_metrics(comparison.as_dict())
        mlflow.set_tags({"decision": "promoted" if promoted else "rejected", "reason": reason})
