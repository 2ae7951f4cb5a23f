"""The newcomer's commands print no traceback and no warning when nothing failed (issue 20, item 7).

The README's quick start and everyday commands, run the way a user runs them: through `make`, in
a repository of their own, with the environment of a machine that never ran them (no Prefect
setting, no DO_NOT_TRACK, a Prefect home whose database this first run creates, which is where
the telemetry heartbeat of Prefect's temporary server printed its "database is locked"
tracebacks). Their whole output, standard output and error together, must hold no traceback, no
line of the warnings module (`FutureWarning: ...`, `UserWarning: ...`) and no line a library logs
at WARNING level.

The repository is a copy of the clone where the session's real `dvc repro` ran (tests/conftest.py,
pipeline_repo), with a fresh MLflow store, as a clone has, and the quick tuning settings of
tests/flows/test_retrain.py, so that `make repro` and the challenger's `dvc repro` take seconds.
The promotion margin lets any challenger through, so that `make rollback` has a model to go back
to. make takes its `venv` prerequisite as done: the copy has no .venv, and this environment's
tools come first on PATH (tests/conftest.py, user_env).

Left out for their cost or what they need: `make test`, `make test-fast` and `make lint` (this
suite and its checks), `make benchmark`, `make loadtest` and the calibrations (minutes each),
`make container` (an image build), `make eda` (a browser), `make lock` (the network). The quick
start's `dvc exp run` and `dvc plots show` run in tests/e2e/test_pipeline.py (output unchecked).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from api.schemas import FIRST_TRACT
from tests.conftest import run, synthetic_table, user_env
from tools.loopback import free_port, wait_until_healthy

pytestmark = pytest.mark.e2e

# make's `venv` prerequisite, taken as made (`make -o`): the copy has no .venv of its own
VENV_STAMP = ".venv/.installed-from-lock"
# tests/flows/test_retrain.py's quick tuning: the linear families, 3-fold CV once, no nested CV
QUICK_TUNE = {"families": ["ridge", "lasso"], "cv": {"folds": 3, "repeats": 1}, "nested": False}
ADMIN = "newcomer-admin-key"
NOISE = re.compile(
    r"Traceback \(most recent call last\)"  # an exception's traceback, even an ignored one
    r"|\b\w*Warning: "  # the warnings module: "file.py:12: FutureWarning: message"
    r"|\bWARNING\b"  # a library's log at WARNING level: "[IPKernelApp] WARNING | ..."
)
# What the newcomer's shell does not hold: the suite's own settings of the tools under test.
NOT_A_NEWCOMERS = ("PREFECT_", "BOSTON_API_")
NOT_A_NEWCOMERS_EXACTLY = {"DO_NOT_TRACK", "CI", "PYTHONWARNINGS", "WEB_CONCURRENCY"}


@dataclass(frozen=True)
class Newcomer:
    repo: Path
    prefect_home: Path
    repro_output: str

    def env(self, **variables: str) -> dict[str, str]:
        env = {
            name: value
            for name, value in user_env().items()
            if not name.startswith(NOT_A_NEWCOMERS) and name not in NOT_A_NEWCOMERS_EXACTLY
        }
        return {**env, "PREFECT_HOME": str(self.prefect_home), **variables}


def make_command(target: str, *variables: str) -> list[str]:
    return ["make", "--no-print-directory", "-o", VENV_STAMP, target, *variables]


def make(
    repo: Path, target: str, *variables: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`make target VAR=value ...` in `repo`, its standard output and error as one text."""
    return subprocess.run(
        make_command(target, *variables),
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout,
    )  # fmt: skip


def noise(outputs: dict[str, str]) -> list[str]:
    """Every line of noise, named by the command that printed it."""
    return [
        f"{command}: {line}"
        for command, output in outputs.items()
        for line in output.splitlines()
        if NOISE.search(line)
    ]


def assert_quiet(outputs: dict[str, str]) -> None:
    found = noise(outputs)
    assert not found, "\n".join(
        ["the newcomer's commands printed:", *found, "", "their whole output:"]
        + [f"--- {command}\n{output}" for command, output in outputs.items()]
    )


@dataclass
class Console:
    """What a process group printed to its terminal; whole once every process of it has exited."""

    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def in_a_terminal(
    command: list[str], repo: Path, env: dict[str, str], ready_url: str
) -> Iterator[Console]:
    """A server started as a user starts it in a terminal, and stopped as they stop it: Ctrl-C,
    the SIGINT that every process of the terminal's foreground group gets."""
    console = Console()
    process = subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    output = process.stdout
    assert output is not None

    def read() -> None:  # until every process holding the terminal's end has exited
        for line in output:
            console.lines.append(line.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            wait_until_healthy(ready_url, process, timeout=120)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{console.text[-4000:]}") from error
        yield console
    finally:
        group = process.pid  # a session of its own: its group is its pid
        if process.poll() is None:
            os.killpg(group, signal.SIGINT)
        reader.join(timeout=60)
        if reader.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            reader.join(timeout=15)
            raise AssertionError(f"{command} still ran 60 s after Ctrl-C:\n{console.text}")
        process.wait(timeout=15)
        output.close()


def outcome(output: str) -> dict[str, Any]:
    """The one JSON object `python -m flows` prints among Prefect's log lines."""
    (line,) = [line for line in output.splitlines() if line.startswith("{")]
    found: dict[str, Any] = json.loads(line)
    return found


@pytest.fixture(scope="module")
def newcomer(pipeline_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Newcomer:
    return newcomers_copy(pipeline_repo, tmp_path_factory.mktemp("newcomer"))


def newcomers_copy(pipeline_repo: Path, root: Path) -> Newcomer:
    """A copy of the pipeline's clone in `root`, with the quick settings, after `make repro`."""
    repo = root / "repo"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    # a clone's MLflow store is its own: the copied one keeps its artifacts in pipeline_repo
    (repo / "mlflow.db").unlink(missing_ok=True)
    shutil.rmtree(repo / "mlruns", ignore_errors=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tune"].update(QUICK_TUNE)
    params["retrain"]["margin"] = 100.0  # any challenger is promoted: rollback has work to do
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "quick settings"], repo)
    newcomer = Newcomer(repo, root / "prefect-home", "")
    repro = make(repo, "repro", env=newcomer.env(), timeout=600)
    assert repro.returncode == 0, repro.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline run"], repo)
    return Newcomer(repo, newcomer.prefect_home, repro.stdout)


def test_the_help_pages_are_quiet(newcomer: Newcomer) -> None:
    outputs = {}
    for name, command in {
        "make help": ["make", "--no-print-directory", "help"],
        "python -m api --help": [sys.executable, "-m", "api", "--help"],
        "python -m flows --help": [sys.executable, "-m", "flows", "--help"],
    }.items():
        done = subprocess.run(
            command, cwd=newcomer.repo, env=newcomer.env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout, done.stdout
        outputs[name] = done.stdout
    assert_quiet(outputs)


def test_make_repro_is_quiet(newcomer: Newcomer) -> None:
    assert "Running stage 'tune'" in newcomer.repro_output
    assert_quiet({"make repro": newcomer.repro_output})


def test_serving_retraining_rollback_and_monitoring_are_quiet(newcomer: Newcomer) -> None:
    repo = newcomer.repo
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the service logs where the docs say (docs/monitoring.md) and make monitor reads by default
    serving = newcomer.env(
        BOSTON_API_PORT=str(port), BOSTON_API_LOG_SINK="predictions.jsonl",
        BOSTON_API_ADMIN_KEY=ADMIN,
    )  # fmt: skip
    flow = newcomer.env(BOSTON_API_ADMIN_KEY=ADMIN)
    sold = synthetic_table(40, seed=12)
    new_rows = repo.parent / "sold.csv"
    sold.to_csv(new_rows, index=False)
    raw = pd.read_csv(repo / "data/raw/HousingData.csv")
    # more rows than monitoring.min_rows (200) and performance_min_rows (100): both reports judge
    houses = raw.sample(250, random_state=20)
    outputs: dict[str, str] = {}
    with in_a_terminal(make_command("serve"), repo, serving, f"{url}/health") as console:
        champion = httpx.get(f"{url}/health").json()["model_version"]
        answer = httpx.post(f"{url}/predict", json=FIRST_TRACT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == champion
        batch = httpx.post(
            f"{url}/predict/batch",
            json={"rows": houses.drop(columns="MEDV").to_dict("records")},
            timeout=60,
        )
        assert batch.status_code == 200, batch.text
        labels = [
            {"request_id": batch.headers["X-Request-ID"], "row": row, "actual": actual}
            for row, actual in enumerate(houses["MEDV"].tolist())
        ]
        receipt = httpx.post(f"{url}/feedback", json=labels, timeout=60)
        assert receipt.status_code == 200 and receipt.json()["recorded"] == 250, receipt.text

        retrain = make(repo, "retrain", f"NEW={new_rows}", f"SERVICE={url}", env=flow)
        outputs["make retrain NEW=sold.csv SERVICE=..."] = retrain.stdout
        assert retrain.returncode == 0, retrain.stdout
        promoted = outcome(retrain.stdout)
        assert promoted["status"] == "promoted", retrain.stdout
        assert httpx.get(f"{url}/health").json()["model_version"] == promoted["model_version"]

        rollback = make(repo, "rollback", f"SERVICE={url}", env=flow)
        outputs["make rollback SERVICE=..."] = rollback.stdout
        assert rollback.returncode == 0, rollback.stdout
        assert outcome(rollback.stdout)["status"] == "rolled back", rollback.stdout
        assert httpx.get(f"{url}/health").json()["model_version"] == champion
    served = console.text
    outputs["make serve (stopped with Ctrl-C)"] = served
    assert "Application shutdown complete." in served, served

    # the reports of the log the service wrote, as `make monitor` and `make performance` read it
    assert (repo / "predictions.jsonl").is_file()
    monitor = make(repo, "monitor", env=newcomer.env())
    outputs["make monitor"] = monitor.stdout
    assert monitor.returncode in (0, 1), monitor.stdout  # a verdict: no drift, or drift
    performance = make(repo, "performance", env=newcomer.env())
    outputs["make performance"] = performance.stdout
    assert performance.returncode in (0, 1), performance.stdout  # judged: ok, or degraded
    assert_quiet(outputs)


def test_the_mlflow_ui_is_quiet(newcomer: Newcomer) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with in_a_terminal(
        make_command("mlflow-ui"), newcomer.repo, newcomer.env(MLFLOW_PORT=str(port)),
        f"{url}/health",
    ) as console:  # fmt: skip
        assert httpx.get(f"{url}/", timeout=30).status_code == 200
        api = f"{url}/ajax-api/2.0/mlflow"
        experiment = httpx.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": "boston-housing"}
        ).json()["experiment"]["experiment_id"]
        runs = httpx.post(f"{api}/runs/search", json={"experiment_ids": [experiment]}, timeout=30)
        assert runs.status_code == 200 and runs.json()["runs"], runs.text
    assert_quiet({"make mlflow-ui (stopped with Ctrl-C)": console.text})


def test_two_workers_are_quiet(newcomer: Newcomer) -> None:
    """`WEB_CONCURRENCY=2 make serve`: uvicorn's supervisor and its workers, Ctrl-C to them all."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = newcomer.env(
        WEB_CONCURRENCY="2", BOSTON_API_PORT=str(port),
        BOSTON_API_LOG_SINK=str(newcomer.repo.parent / "two-workers.jsonl"),
    )  # fmt: skip
    with in_a_terminal(make_command("serve"), newcomer.repo, env, f"{url}/health") as console:
        for _ in range(4):
            assert httpx.post(f"{url}/predict", json=FIRST_TRACT).status_code == 200
    served = console.text
    assert "Stopping parent process" in served, served
    assert_quiet({"WEB_CONCURRENCY=2 make serve (stopped with Ctrl-C)": served})
