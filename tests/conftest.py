"""Shared fixtures: tiny synthetic tables that obey the data contract, and a tiny exported model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

from artifact import PROFILE_NAME, model_version, sha256_of
from conformal import Intervals
from stages.calibrate import out_of_fold_predictions
from stages.contract import FEATURES, TARGET, model_features
from stages.evaluate import interval_report
from stages.export import model_card
from stages.families import build
from stages.profile import build_profile
from tools.loopback import free_port, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
RAW_DATA = REPO / "data" / "raw" / "HousingData.csv"


KAGGLE_GAP_COLUMNS = ["CRIM", "ZN", "INDUS", "CHAS", "AGE", "LSTAT"]


def kaggle_copy(path: Path) -> Path:
    """The canonical table as Kaggle ships it: 20 NA cells in six columns, CRLF, unquoted header."""
    table = pd.read_csv(RAW_DATA)
    rng = np.random.default_rng(7)
    text = table.astype(object)
    for column in KAGGLE_GAP_COLUMNS:
        text.loc[rng.choice(len(table), 20, replace=False), column] = "NA"
    with path.open("w", newline="") as stream:
        text.to_csv(stream, index=False, lineterminator="\r\n", quoting=0)
    return path


def synthetic_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows inside every physical bound, with a price that rises with RM and falls with LSTAT."""
    rng = np.random.default_rng(seed)
    table: dict[str, Any] = {}
    for column in FEATURES:
        if column.kind == "binary":
            table[column.name] = rng.integers(0, 2, rows).astype(float)
        elif column.kind == "integer":
            table[column.name] = rng.integers(1, 25, rows).astype(float)
        else:
            low, high = column.minimum, column.maximum
            table[column.name] = np.round(
                rng.uniform(low + (high - low) * 0.1, high * 0.5, rows), 4
            )
    frame = pd.DataFrame(table)
    frame["RM"] = np.round(rng.uniform(4, 8.5, rows), 3)
    price = 22 + 6 * (frame["RM"] - 6) - 0.4 * (frame["LSTAT"] - 12) + rng.normal(0, 1.5, rows)
    frame[TARGET.name] = np.round(price.clip(5, TARGET.maximum), 2)
    return frame


@pytest.fixture
def tiny_table() -> pd.DataFrame:
    return synthetic_table(60)


def export_tiny_model(model_dir: Path, family: str = "ridge") -> dict[str, Any]:
    """Fit a small Pipeline on synthetic data and export it exactly as the export stage does."""
    table = synthetic_table(80, seed=1)
    features = model_features(["B"])
    pipeline = build(family, alpha=1.0, seed=0).fit(
        table[features].to_numpy(), table[TARGET.name].to_numpy()
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    artifact = model_dir / "model.pkl"
    joblib.dump(pipeline, artifact)
    profile = build_profile(
        {name: table[name].to_numpy() for name in features},
        categorical={column.name for column in FEATURES if column.kind != "float"},
        predictions=pipeline.predict(table[features].to_numpy()),
        model_version=model_version(sha256_of(artifact)),
        bins=10,
    )
    (model_dir / PROFILE_NAME).write_text(json.dumps(profile))
    train = model_dir / "train.csv"
    table.to_csv(train, index=False)
    tune_report = {
        "best": {"family": family, "best_params": {}, "cv_rmse_mean": 1.0, "cv_rmse_std": 0.1},
        "features": features,
        "cv": {"folds": 5, "repeats": 1, "train_rows": len(table)},
    }
    # calibrated as the calibrate stage does, on out-of-fold predictions of the training rows
    actual = table[TARGET.name].to_numpy()
    oof = out_of_fold_predictions(pipeline, table, features, folds=5, seed=0)
    intervals = Intervals.calibrate(oof, actual, level=0.9, bins=3, upper_limit=TARGET.maximum)
    evaluate_report = {
        "cv": {"family": family, "cv_rmse_mean": 1.0, "cv_rmse_std": 0.1},
        "test": {"rmse": 1.0, "mae": 0.8, "r2": 0.9, "rows": 20},
        "intervals": interval_report(intervals, actual, oof)[0],
    }
    card = model_card(
        artifact=artifact, tune_report=tune_report, evaluate_report=evaluate_report,
        alpha=1.0, train_md5="0" * 32, profile_sha256=sha256_of(model_dir / PROFILE_NAME),
        intervals=intervals,
    )  # fmt: skip
    (model_dir / "model_card.json").write_text(json.dumps(card, indent=2))
    train.unlink()
    return card


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    export_tiny_model(directory)
    return directory


def run(
    command: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command the way a user would in `cwd`, with this environment's tools first on PATH."""
    completed = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**user_env(), **(env or {})}
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {completed.returncode}\n"
            f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
        )
    return completed


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def clone_working_tree(destination: Path) -> Path:
    """A fresh git repository holding exactly the files a clone of this work tree would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    run(["git", "init", "-q", "-b", "main"], destination)
    # dvc exp run commits too; a clean CI machine may have no git identity at all
    run(["git", "config", "user.name", "Pipeline Test"], destination)
    run(["git", "config", "user.email", "pipeline-test@localhost"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-qm", "clone"], destination)
    return destination


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary clone in which the real `dvc repro` has run once; shared by the e2e tests."""
    repo = clone_working_tree(tmp_path_factory.mktemp("pipeline") / "repo")
    run([sys.executable, "-m", "dvc", "repro"], repo)
    return repo


@pytest.fixture(scope="session")
def real_model_dir(pipeline_repo: Path) -> Path:
    return pipeline_repo / "models"


# The Debian package's browser (tools/system_packages.sh installs it); Playwright's own download is
# not used. BROWSER_EXECUTABLE points elsewhere where Chromium lives under another path.
CHROMIUM = os.environ.get("BROWSER_EXECUTABLE", "/usr/bin/chromium")
# Without these, a headless Chromium on a machine with no outside network keeps trying to reach
# its vendor's services; the tests load only local pages.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """A real headless Chromium, driven by Playwright, shared by the tests of pages people open."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def running_server(
    command: list[str], ready_url: str, output: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process until the block ends; its output in `output`, shown if it never gets up."""
    with output.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            try:
                wait_until_healthy(ready_url, process, timeout=60)
            except RuntimeError as error:
                raise RuntimeError(f"{error}\n{output.read_text()[-4000:]}") from error
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextmanager
def running_api(
    model_dir: Path,
    log: Path,
    port: int | None = None,
    uvicorn_args: Sequence[str] = (),
    **settings: str,
) -> Iterator[str]:
    """A real uvicorn serving `model_dir` on a loopback port (a free one unless given), logging
    predictions to `log`; `uvicorn_args` go to uvicorn (say, `--workers 2`) and `settings`
    become BOSTON_API_* variables. Yields the base URL."""
    port = port or free_port()
    env = {
        **os.environ,
        "BOSTON_API_MODEL_DIR": str(model_dir),
        "BOSTON_API_LOG_SINK": str(log),
        **{f"BOSTON_API_{name.upper()}": value for name, value in settings.items()},
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    output = log.with_name(f"{log.stem}.server-{port}.out")
    with running_server(
        [*command, "--port", str(port), *uvicorn_args], f"{url}/health", output, env
    ):
        yield url


def open_offline(browser: Browser, path: Path, width: int = 1280) -> tuple[Page, list[str]]:
    """`path` opened from disk with every request beyond it refused, as a reader without network
    would open it; returns the page and the addresses it tried to fetch (should be none)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    fetched: list[str] = []

    def local_only(route: Route, request: Request) -> None:
        if request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            fetched.append(request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(path.as_uri(), wait_until="load")
    return page, fetched
