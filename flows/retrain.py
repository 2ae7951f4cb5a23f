"""The retraining flow: new labelled rows -> `dvc repro` -> challenger against champion -> promote
(or reject), and the service follows.

    python -m flows.retrain run --new-data FILE_OR_DIR [--service-url URL] [--margin M]
    python -m flows.retrain run --feedback LOG [LOG ...]    # labelled predictions as new rows
    python -m flows.retrain serve --new-data DIR --cron "0 3 * * *"   # on a schedule
    python -m flows.retrain on-verdict --log LOG [LOG ...] --new-data DIR  # when monitoring says so
    python -m flows.retrain rollback [--service-url URL]

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
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import joblib
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task

from artifact import CARD_NAME, PROFILE_NAME, read_card, sha256_of
from flows.decisions import Comparison, compare, decide, held_out, new_rows
from monitoring import performance, report
from stages.contract import COLUMNS, TARGET
from stages.ingest import DataValidationError, read_raw, validate

RAW = Path("data/raw/HousingData.csv")
TRAIN, TEST = Path("data/processed/train.csv"), Path("data/processed/test.csv")
MODEL_FILES = ("model.joblib", PROFILE_NAME, CARD_NAME)  # the card last: it names the others
PREVIOUS = ".previous"
LOCK = Path(".dvc/tmp/retrain.lock")
EXPERIMENT = "boston-housing-retrain"
# The deployment `python -m flows.retrain serve` creates (Prefect names it flow/deployment).
DEPLOYMENT = "retrain-on-schedule"
GATE = "quality gate failed"  # how the evaluate stage refuses a model (stages/evaluate.py)


@dataclass(frozen=True)
class Outcome:
    """What a run did: 'promoted', 'rejected', 'nothing new' or 'busy'."""

    status: str
    reason: str
    model_version: str | None = None
    branch: str | None = None
    comparison: dict[str, Any] | None = None


@dataclass(frozen=True)
class Setup:
    """Where things are: the repository, the served model folder, the service, the settings."""

    repo: Path
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
        return cls(
            repo=repo.resolve(),
            serve_dir=(serve_dir or repo / "models").resolve(),
            service_url=service_url,
            margin=float(block["margin"] if margin is None else margin),
            resamples=int(block["bootstrap"]),
            seed=int(params["seed"]),
            registered_model=str(params["export"]["registered_model"]),
        )


@task
def gather(new_data: Path, repo: Path) -> pd.DataFrame:
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
    existing = validate(read_raw(repo / RAW), correct_medv=False)
    return new_rows(pd.concat(tables, ignore_index=True), existing)


def feedback_rows(logs: list[Path], destination: Path) -> tuple[Path, str]:
    """The labelled predictions of the service's logs as a CSV in the raw data's contract, and
    what was left out: a request that lacked a column the raw data requires (B, unused by the
    model, may be left out of requests) cannot become a training row."""
    names = [column.name for column in COLUMNS]
    required = [column.name for column in COLUMNS if not column.nullable]
    rows = [
        {**inputs, TARGET.name: actual}
        for inputs, actual in performance.labelled_inputs(performance.read(logs))
    ]
    table = pd.DataFrame(rows, columns=names)
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
    repo = setup.repo
    _run(["git", "worktree", "add", "-q", "-b", branch, str(workdir), "HEAD"], repo)
    # the worktree shares the repository's DVC cache and remote (its own config is relative)
    _run(["dvc", "cache", "dir", "--local", str(repo / ".dvc" / "cache")], workdir)
    remote = _remote_url(repo)
    if remote is not None:
        name, url = remote
        _run(["dvc", "remote", "modify", "--local", name, "url", url], workdir)
    with (workdir / RAW).open("a", newline="") as stream:
        rows.to_csv(stream, header=False, index=False, na_rep="NA", lineterminator="\n")
    done = _run(["dvc", "repro"], workdir, env=_tracking_env(repo), check=False)
    if done.returncode != 0:
        gate = [line for line in done.stderr.splitlines() if GATE in line]
        if gate:
            return gate[-1].strip()
        raise RuntimeError(f"dvc repro failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return None


@task
def score(setup: Setup, workdir: Path) -> tuple[Comparison, str, str]:
    """Challenger and champion on the same held-out rows: the comparison and both versions."""
    champion_card, champion = _load(setup.serve_dir)
    challenger_card, challenger = _load(workdir / "models")
    test = pd.read_csv(workdir / TEST)
    train_path = setup.repo / TRAIN
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
def promote(setup: Setup, workdir: Path, branch: str, message: str) -> None:
    """Commit on the branch, push the outputs, move the aliases, serve the new files."""
    _run(["git", "add", "-A"], workdir)
    _run(["git", "commit", "-q", "-m", message], workdir)
    if _remote_url(setup.repo) is not None:
        _run(["dvc", "push", "-q"], workdir)
    backup = setup.serve_dir / PREVIOUS
    backup.mkdir(exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy2(setup.serve_dir / name, backup / name)
    _install(workdir / "models", setup.serve_dir)


@task
def reload_service(setup: Setup, expected: str) -> str:
    """Ask the service to load the served folder again; its answer names the version it serves."""
    if setup.service_url is None:
        return "no service URL given: the service loads the new model at its next start or reload"
    response = httpx.post(
        f"{setup.service_url}/admin/reload",
        headers={"X-Admin-Key": os.environ.get("BOSTON_API_ADMIN_KEY", "")},
        timeout=60,
    )
    json_answer = response.headers.get("content-type", "").startswith("application/json")
    answer = response.json() if json_answer else {}
    if response.status_code != 200 or answer.get("model_version") != expected:
        raise RuntimeError(
            f"the service at {setup.service_url} did not reload model {expected}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return f"the service at {setup.service_url} serves model {expected}"


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
        _only_run(setup.repo) as running,
        tempfile.TemporaryDirectory(prefix="boston-retrain-") as scratch,
    ):
        if not running:
            logger.info("another retraining holds %s; this run does nothing", LOCK)
            return Outcome("busy", f"another retraining holds {LOCK}")
        if feedback is not None:
            new_data, note = feedback_rows(feedback, Path(scratch) / "feedback.csv")
            logger.info(note)
        assert new_data is not None
        rows = gather(Path(new_data), setup.repo)
        if rows.empty:
            reason = f"nothing new in {new_data}: every row is already in {RAW}"
            logger.info(reason)
            return Outcome("nothing new", reason)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        branch = f"retrain/{stamp}"
        logger.info("%d new rows; training the challenger on branch %s", len(rows), branch)
        workdir = Path(scratch) / "repo"
        try:
            refused = train_challenger(rows, setup, workdir, branch)
            if refused is not None:
                # the pipeline itself would not export it: nothing to compare or register
                logger.info("challenger rejected by the pipeline: %s", refused)
                _record(setup, rows, promoted=False, reason=refused)
                return Outcome("rejected", refused)
            comparison, old, new = score(setup, workdir)
            decision = decide(comparison, setup.margin)
            logger.info("challenger %s against champion %s: %s", new, old, decision.reason)
            registry = _Registry(setup, old, new)
            _record(setup, rows, decision.promote, decision.reason, comparison, old, new)
            if not decision.promote:
                registry.reject(decision.reason)
                return Outcome("rejected", decision.reason, old, None, comparison.as_dict())
            promote(setup, workdir, branch, _message(len(rows), old, new, decision.reason))
            logger.info(registry.promote())
            logger.info(reload_service(setup, new))
            return Outcome("promoted", decision.reason, new, branch, comparison.as_dict())
        finally:
            _run(["git", "worktree", "remove", "--force", str(workdir)], setup.repo, check=False)
            if not _branch_has_commit(setup.repo, branch):
                _run(["git", "branch", "-q", "-D", branch], setup.repo, check=False)


@flow(name="rollback", log_prints=True)
def rollback(
    repo: Path = Path("."), serve_dir: Path | None = None, service_url: str | None = None
) -> Outcome:
    """Serve the model before the last promotion again: its files from `.previous/`, the
    `champion` alias back on its version, the service reloaded."""
    logger = get_run_logger()
    setup = Setup.read(repo, serve_dir, service_url, None)
    backup = setup.serve_dir / PREVIOUS
    if not (backup / CARD_NAME).is_file():
        raise FileNotFoundError(f"no earlier model kept in {backup}: nothing to roll back to")
    current = read_card(setup.serve_dir)["model_version"]
    earlier = read_card(backup)["model_version"]
    with tempfile.TemporaryDirectory(prefix="boston-rollback-") as scratch:
        swap = Path(scratch)
        for name in MODEL_FILES:
            shutil.copy2(setup.serve_dir / name, swap / name)
        _install(backup, setup.serve_dir)
        for name in MODEL_FILES:
            shutil.copy2(swap / name, backup / name)
    _Registry(setup, current, earlier).roll_back()
    logger.info("rolled back from model %s to %s", current, earlier)
    logger.info(reload_service(setup, earlier))
    return Outcome("rolled back", f"model {earlier} serves again, {current} kept in {backup}")


class _Registry:
    """The MLflow registry's view of the two models, by the `model_version` tag export sets."""

    def __init__(self, setup: Setup, champion: str, challenger: str) -> None:
        mlflow.set_tracking_uri(_tracking_uri(setup.repo))
        self.client, self.name = MlflowClient(), setup.registered_model
        self.champion, self.challenger = self._version(champion), self._version(challenger)

    def _version(self, model_version: str) -> str | None:
        found = self.client.search_model_versions(
            f"name = '{self.name}' and tag.model_version = '{model_version}'"
        )
        return max((v.version for v in found), key=int) if found else None

    def promote(self) -> str:
        if self.challenger is not None:
            self.client.set_registered_model_alias(self.name, "champion", self.challenger)
        if self.champion is None:
            return "the model served before has no registry version: no `previous` alias set"
        self.client.set_registered_model_alias(self.name, "previous", self.champion)
        return f"registry: champion -> version {self.challenger}, previous -> {self.champion}"

    def reject(self, reason: str) -> None:
        if self.challenger is not None:
            self.client.set_model_version_tag(self.name, self.challenger, "rejected", reason)

    def roll_back(self) -> None:
        if self.challenger is not None:
            self.client.set_registered_model_alias(self.name, "champion", self.challenger)
        if self.champion is not None:
            self.client.set_model_version_tag(self.name, self.champion, "rolled_back", "true")
        with contextlib.suppress(MlflowException):
            self.client.delete_registered_model_alias(self.name, "previous")


def _record(
    setup: Setup,
    rows: pd.DataFrame,
    promoted: bool,
    reason: str,
    comparison: Comparison | None = None,
    champion: str | None = None,
    challenger: str | None = None,
) -> None:
    """One MLflow run per decision, with its figures (none when the pipeline's gate refused the
    challenger before any comparison)."""
    mlflow.set_tracking_uri(_tracking_uri(setup.repo))
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"retrain-{challenger or 'gated'}-vs-{champion or 'served'}"):
        params = {"new_rows": len(rows), "margin": setup.margin, "bootstrap": setup.resamples,
                  "champion": champion, "challenger": challenger}  # fmt: skip
        mlflow.log_params({name: value for name, value in params.items() if value is not None})
        if comparison is not None:
            mlflow.log_metrics(comparison.as_dict())
        mlflow.set_tags({"decision": "promoted" if promoted else "rejected", "reason": reason})


def _message(rows: int, old: str, new: str, reason: str) -> str:
    return f"Retrain: {rows} new rows; model {new} replaces {old}\n\n{reason}\n"


def _install(source: Path, target: Path) -> None:
    for name in MODEL_FILES:
        partial = target / f".{name}.partial"
        shutil.copy2(source / name, partial)
        partial.replace(target / name)


def _load(model_dir: Path) -> tuple[dict[str, Any], Any]:
    card = read_card(model_dir)
    artifact = model_dir / card["artifact"]["file"]
    if sha256_of(artifact) != card["artifact"]["sha256"]:
        raise RuntimeError(f"{artifact} does not match its card's sha256; refusing to load it")
    return card, joblib.load(artifact)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # the card's training_data.md5


@contextlib.contextmanager
def _only_run(repo: Path) -> Iterator[bool]:
    path = repo / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tracking_uri(repo: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo / 'mlflow.db'}"


def _tracking_env(repo: Path) -> dict[str, str]:
    """The stages in the worktree record to the repository's MLflow store, not the worktree's
    (a tracking server, when MLFLOW_TRACKING_URI names one, keeps its own artifacts)."""
    uri = _tracking_uri(repo)
    if "MLFLOW_TRACKING_URI" not in os.environ:
        # the local store's artifacts go under the repository, not the worktree deleted after
        mlflow.set_tracking_uri(uri)
        experiment = yaml.safe_load((repo / "params.yaml").read_text())["export"]["experiment"]
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=(repo / "mlruns").as_uri())
    return {"MLFLOW_TRACKING_URI": uri}


def _remote_url(repo: Path) -> tuple[str, str] | None:
    """The default DVC remote's name and its URL, made absolute (a relative one is relative to
    the repository's .dvc folder)."""
    name = _run(["dvc", "config", "core.remote"], repo, check=False).stdout.strip()
    if not name:
        return None
    url = _run(["dvc", "config", f"remote.{name}.url"], repo).stdout.strip()
    if "://" not in url and not Path(url).is_absolute():
        url = str((repo / ".dvc" / url).resolve())
    return name, url


def _branch_has_commit(repo: Path, branch: str) -> bool:
    ahead = _run(["git", "rev-list", "--count", f"HEAD..{branch}"], repo, check=False)
    return ahead.returncode == 0 and ahead.stdout.strip() not in ("", "0")


def _run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    if command[0] == "dvc":
        command = [sys.executable, "-m", "dvc", *command[1:]]
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.retrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "serve", "on-verdict", "rollback"):
        command = commands.add_parser(name)
        command.add_argument("--service-url", help="the service to reload (POST /admin/reload)")
        command.add_argument("--serve-dir", type=Path, help="the served model folder (models)")
        if name != "rollback":
            source = command.add_mutually_exclusive_group(required=True)
            source.add_argument("--new-data", type=Path, help="a CSV of new rows, or a folder")
            source.add_argument(
                "--feedback", type=Path, nargs="+", help="the service's logs: labelled predictions"
            )
            command.add_argument("--margin", type=float, help="overrides retrain.margin")
    commands.choices["serve"].add_argument("--cron", required=True, help="e.g. '0 3 * * *'")
    verdict = commands.choices["on-verdict"]
    verdict.add_argument("--log", type=Path, nargs="+", required=True, help="the service's logs")
    verdict.add_argument("--reports", type=Path, default=Path("reports/monitoring"))
    args = parser.parse_args(argv)
    where = {"serve_dir": args.serve_dir, "service_url": args.service_url}
    if args.command == "rollback":
        print(json.dumps(asdict(rollback(**where))))
        return 0
    settings = {
        "new_data": args.new_data,
        "feedback": args.feedback,
        "margin": args.margin,
        **where,
    }
    if args.command == "serve":
        # One run at a time: in this runner (limit) and across every runner of the deployment
        # (global_limit, held by the Prefect server); a run that finds nothing new says so, stops.
        retrain.serve(name=DEPLOYMENT, cron=args.cron, parameters=settings, limit=1, global_limit=1)
        return 0
    model_dir = args.serve_dir or Path("models")
    if args.command == "on-verdict" and not wants_retraining(args.log, model_dir, args.reports):
        print("no drift and no degradation: nothing to retrain")
        return 0
    outcome = retrain(**settings)
    print(json.dumps(asdict(outcome)))
    return 0


def wants_retraining(logs: list[Path], model_dir: Path, reports: Path) -> bool:
    """The monitoring commands' own verdicts on the served model: drift found (the drift report)
    or degraded (the performance report)."""
    where = ["--log", *map(str, logs), "--model-dir", str(model_dir), "--out", str(reports)]
    drift = report.main(where)
    degraded = performance.main(where)
    return drift == report.DRIFT or degraded == performance.DEGRADED


if __name__ == "__main__":
    sys.exit(main())
