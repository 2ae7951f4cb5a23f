"""The retraining flow: new labelled rows -> `dvc repro` -> challenger against champion -> promote
(or reject), and the service follows. `python -m flows` runs it (see flows/cli.py).

A run validates the new rows with ingest's own rules (a bad file stops it with ingest's message,
before anything changes), keeps the rows not already in the raw data, and trains the challenger
in a git worktree of its own on a new branch `retrain/<time>`, so the workspace and the served
model folder are untouched while it runs. Both models score the same held-out rows (the new test
split, less any row the champion trained on) and flows.decisions decides. Promoted: the branch
gets the data, `dvc.lock` and the card in one commit, `dvc push` sends the outputs to the DVC
remote, the MLflow alias `champion` moves to the challenger and `previous` to the old champion,
the model files are copied into the served folder (the old ones kept in `.previous/` there), and
the service is asked to reload. Rejected: the challenger's registry version is tagged `rejected`
with the figures, the branch is deleted, and nothing else changes. Every decision and its figures
go to the flow run's log and to an MLflow run. One run at a time: a second one finds the lock
taken and says so.

The work itself lives beside this module: git and DVC in flows/workspace.py, the MLflow registry
in flows/registry.py, the served folder and the service in flows/serving.py, the rules in
flows/decisions.py. The flows and tasks here put them in order.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from prefect import flow, get_run_logger, task

from artifact import read_card, sha256_of
from flows import serving, workspace
from flows.decisions import Comparison, compare, decide, held_out, new_rows
from flows.registry import Registry, record_decision, tracking_env
from monitoring.logs import LogReader
from stages.contract import COLUMNS, TARGET
from stages.files import pipeline_path
from stages.ingest import DataValidationError, read_raw, validate

# The deployment `python -m flows serve` creates (Prefect names it flow/deployment).
DEPLOYMENT = "retrain-on-schedule"


@dataclass(frozen=True)
class Outcome:
    """What a run did: 'promoted', 'rejected', 'nothing new', 'busy' or 'rolled back'."""

    status: str
    reason: str
    model_version: str | None = None
    branch: str | None = None
    comparison: dict[str, Any] | None = None


@dataclass(frozen=True)
class Setup:
    """Where things are (the repository, the pipeline's paths in it, the served model folder, the
    service) and the settings of the comparison, from params.yaml unless overridden."""

    repo: Path
    raw: Path
    train: Path
    test: Path
    model_dir: Path
    serve_dir: Path
    service_url: str | None
    margin: float
    resamples: int
    seed: int
    registered_model: str

    @classmethod
    def read(
        cls, repo: Path, serve_dir: Path | None, service_url: str | None, margin: float | None
    ) -> Setup:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        block = params["retrain"]
        pipeline = repo / "dvc.yaml"  # the pipeline's paths live there, in `vars`
        model_dir = pipeline_path("model_dir", pipeline)
        return cls(
            repo=repo.resolve(),
            raw=pipeline_path("raw", pipeline),
            train=pipeline_path("train", pipeline),
            test=pipeline_path("test", pipeline),
            model_dir=model_dir,
            serve_dir=(serve_dir or repo / model_dir).resolve(),
            service_url=service_url,
            margin=float(block["margin"] if margin is None else margin),
            resamples=int(block["bootstrap"]),
            seed=int(params["seed"]),
            registered_model=str(params["export"]["registered_model"]),
        )


@task
def gather(new_data: Path, raw: Path) -> pd.DataFrame:
    """The new rows: every CSV given (a file, or a folder's *.csv), validated by ingest's rules,
    less the rows the raw data already holds."""
    if not new_data.exists():
        raise DataValidationError(f"{new_data}: no such file or folder of new rows")
    files = sorted(new_data.glob("*.csv")) if new_data.is_dir() else [new_data]
    if not files:
        raise DataValidationError(f"{new_data}: no CSV files to read")
    tables = []
    for path in files:
        try:
            tables.append(validate(read_raw(path), correct_medv=False))
        except DataValidationError as error:
            raise DataValidationError(f"{path}: {error}") from None
    existing = validate(read_raw(raw), correct_medv=False)
    return new_rows(pd.concat(tables, ignore_index=True), existing)


def feedback_rows(logs: list[Path], destination: Path) -> tuple[Path, str]:
    """The labelled predictions of the service's logs as a CSV in the raw data's contract, and
    what was left out: a request that lacked a column the raw data requires (B, unused by the
    model, may be left out of requests) cannot become a training row."""
    names = [column.name for column in COLUMNS]
    required = [column.name for column in COLUMNS if not column.nullable]
    sent = [name for name in names if name != TARGET.name]
    # through DuckDB: only the labelled rows come into memory, however long the logs
    with LogReader(logs, sent) as reader:
        labelled, _ = reader.labelled()
    table = pd.DataFrame({**labelled.inputs, TARGET.name: labelled.actuals}, columns=names)
    complete = table[required].notna().all(axis=1)
    table[complete].to_csv(destination, index=False, na_rep="NA")
    left_out = int((~complete).sum())
    lacking = sorted(name for name in required if table.loc[~complete, name].isna().any())
    note = f"{int(complete.sum())} labelled predictions from {len(logs)} log(s)" + (
        f"; {left_out} left out, their requests lacked {', '.join(lacking)}" if left_out else ""
    )
    return destination, note


@task
def train_challenger(rows: pd.DataFrame, setup: Setup, workdir: Path, branch: str) -> str | None:
    """A worktree on a new branch, the rows appended to its raw data, `dvc repro` there; the
    evaluate stage's message when the challenger fails the pipeline's quality gate."""
    workspace.open_worktree(setup.repo, workdir, branch)
    with (workdir / setup.raw).open("a", newline="") as stream:
        rows.to_csv(stream, header=False, index=False, na_rep="NA", lineterminator="\n")
    return workspace.repro(workdir, env=tracking_env(setup.repo))


@task
def score(setup: Setup, workdir: Path) -> tuple[Comparison, str, str]:
    """Challenger and champion on the same held-out rows: the comparison and both versions."""
    champion_card, champion = _load(setup.serve_dir)
    challenger_card, challenger = _load(workdir / setup.model_dir)
    test = pd.read_csv(workdir / setup.test)
    train_path = setup.repo / setup.train
    known = train_path.is_file() and _md5(train_path) == champion_card["training_data"]["md5"]
    rows = held_out(test, pd.read_csv(train_path) if known else None)
    target = champion_card["target"]["name"]

    def predict(model: Any, card: dict[str, Any]) -> np.ndarray:
        return np.asarray(model.predict(rows[card["model_inputs"]].to_numpy(dtype=np.float64)))

    comparison = compare(
        rows[target].to_numpy(dtype=np.float64),
        predict(champion, champion_card),
        predict(challenger, challenger_card),
        setup.resamples,
        setup.seed,
    )
    return comparison, str(champion_card["model_version"]), str(challenger_card["model_version"])


@task
def promote(setup: Setup, workdir: Path, message: str) -> None:
    """Commit on the branch, push the outputs, serve the new files."""
    workspace.commit_and_push(setup.repo, workdir, message)
    serving.replace_keeping_previous(workdir / setup.model_dir, setup.serve_dir)


@task
def reload_service(setup: Setup, expected: str) -> str:
    """Ask the service to load the served folder again; its answer names the version it serves."""
    return serving.reload(setup.service_url, expected)


@flow(name="retrain", log_prints=True)
def retrain(
    new_data: Path | None = None,
    feedback: list[Path] | None = None,
    repo: Path = Path("."),
    serve_dir: Path | None = None,
    service_url: str | None = None,
    margin: float | None = None,
) -> Outcome:
    """New labelled rows in (a CSV file or folder, or the service's logs of predictions and their
    labels), a decision out (see the module's docstring)."""
    logger = get_run_logger()
    if (new_data is None) == (feedback is None):
        raise ValueError("give the new rows either as new_data (CSV) or as feedback (logs)")
    setup = Setup.read(repo, serve_dir, service_url, margin)
    with (
        workspace.only_run(setup.repo) as running,
        tempfile.TemporaryDirectory(prefix="boston-retrain-") as scratch,
    ):
        if not running:
            logger.info("another retraining holds %s; this run does nothing", workspace.LOCK)
            return Outcome("busy", f"another retraining holds {workspace.LOCK}")
        if feedback is not None:
            new_data, note = feedback_rows(feedback, Path(scratch) / "feedback.csv")
            logger.info(note)
        assert new_data is not None
        rows = gather(Path(new_data), setup.repo / setup.raw)
        if rows.empty:
            reason = f"nothing new in {new_data}: every row is already in {setup.raw}"
            logger.info(reason)
            return Outcome("nothing new", reason)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        branch = f"retrain/{stamp}"
        logger.info("%d new rows; training the challenger on branch %s", len(rows), branch)
        workdir = Path(scratch) / "repo"
        settings = {"new_rows": len(rows), "margin": setup.margin, "bootstrap": setup.resamples}
        try:
            refused = train_challenger(rows, setup, workdir, branch)
            if refused is not None:
                # the pipeline itself would not export it: nothing to compare or register
                logger.info("challenger rejected by the pipeline: %s", refused)
                record_decision(setup.repo, settings, promoted=False, reason=refused)
                return Outcome("rejected", refused)
            comparison, old, new = score(setup, workdir)
            decision = decide(comparison, setup.margin)
            logger.info("challenger %s against champion %s: %s", new, old, decision.reason)
            registry = Registry(setup.repo, setup.registered_model, serving=old, incoming=new)
            record_decision(
                setup.repo, settings, decision.promote, decision.reason, comparison, old, new
            )
            if not decision.promote:
                registry.reject(decision.reason)
                return Outcome("rejected", decision.reason, old, None, comparison.as_dict())
            promote(setup, workdir, _message(len(rows), old, new, decision.reason))
            logger.info(registry.promote())
            logger.info(reload_service(setup, new))
            return Outcome("promoted", decision.reason, new, branch, comparison.as_dict())
        finally:
            workspace.close_worktree(setup.repo, workdir, branch)


@flow(name="rollback", log_prints=True)
def rollback(
    repo: Path = Path("."), serve_dir: Path | None = None, service_url: str | None = None
) -> Outcome:
    """Serve the model before the last promotion again: its files from `.previous/`, the
    `champion` alias back on its version, the service reloaded."""
    logger = get_run_logger()
    setup = Setup.read(repo, serve_dir, service_url, None)
    earlier = serving.kept_version(setup.serve_dir)
    current = str(read_card(setup.serve_dir)["model_version"])
    backup = serving.swap_with_previous(setup.serve_dir)
    Registry(setup.repo, setup.registered_model, serving=current, incoming=earlier).roll_back()
    logger.info("rolled back from model %s to %s", current, earlier)
    logger.info(reload_service(setup, earlier))
    return Outcome("rolled back", f"model {earlier} serves again, {current} kept in {backup}")


def _message(rows: int, old: str, new: str, reason: str) -> str:
    return f"Retrain: {rows} new rows; model {new} replaces {old}\n\n{reason}\n"


def _load(model_dir: Path) -> tuple[dict[str, Any], Any]:
    """The folder's card and model, refused when the model's bytes do not match the card."""
    card = read_card(model_dir)
    artifact = model_dir / card["artifact"]["file"]
    if sha256_of(artifact) != card["artifact"]["sha256"]:
        raise RuntimeError(f"{artifact} does not match its card's sha256; refusing to load it")
    return card, joblib.load(artifact)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # the card's training_data.md5
