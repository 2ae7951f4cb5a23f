"""Results files: each measuring tool writes its table under a header saying when, on how many
cores, at which commit and by which command it was measured; a trial run writes nothing."""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from studies import degradation_calibration, drift_calibration, promotion_calibration
from tests.conftest import RAW_DATA, REPO, synthetic_table
from tools import benchmark, results, tune_compare

TABLE = "| case | rate |\n|---|--:|\n| no drift | 4.5% |"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one commit: code, and a results file already published."""
    checkout = tmp_path / "checkout"
    (checkout / "docs" / "results").mkdir(parents=True)
    (checkout / "code.py").write_text("x = 1\n")
    (checkout / "docs" / "results" / "old.md").write_text("old figures\n")
    git(checkout, "init", "--quiet")
    git(checkout, "add", ".")
    git(checkout, "commit", "--quiet", "-m", "first")
    return checkout


def test_the_header_says_when_where_and_how_then_the_table_follows(
    repo: Path, tmp_path: Path
) -> None:
    path = tmp_path / "out" / "calibration.md"
    command = "python -m studies.example --trials 5"
    day = datetime.date(2026, 12, 7)
    assert results.write(path, "Example calibration", TABLE, command, repo=repo, today=day) == path
    head = git(repo, "rev-parse", "--short", "HEAD")
    assert path.read_text() == (
        "# Example calibration\n\n"
        "Written by the command below; run it again to regenerate this file, do not edit it.\n\n"
        "- Date: 2026-12-07\n"
        f"- Cores: {os.cpu_count()} (`os.cpu_count()`)\n"
        f"- Commit: {head}\n"
        "- Command: `python -m studies.example --trials 5`\n\n"
        f"{TABLE}\n"
    )


def test_changed_code_is_named_but_published_results_and_new_files_are_not(repo: Path) -> None:
    head = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "docs" / "results" / "old.md").write_text("new figures\n")  # the last tool's output
    (repo / "scratch.txt").write_text("untracked\n")
    assert results.commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert results.commit(repo) == f"{head} + local changes"


def test_outside_a_checkout_the_commit_is_unknown(tmp_path: Path) -> None:
    assert results.commit(tmp_path) == "unknown (not a git checkout)"


def test_the_command_is_quoted_as_a_shell_reads_it() -> None:
    line = results.command_line("tools.benchmark", ["--results", "docs/results/a b.md"])
    assert line == "python -m tools.benchmark --results 'docs/results/a b.md'"


STUDY = ["--data", str(RAW_DATA), "--params", str(REPO / "params.yaml"), "--trials", "1"]


@pytest.mark.parametrize(
    ("main", "module", "title", "table_line"),
    [
        (drift_calibration.main, "studies.drift_calibration", "Drift rule calibration",
         "| case | window rows | min_rows | trials |"),
        (degradation_calibration.main, "studies.degradation_calibration",
         "Degraded rule calibration", "---|--:|---|---|---|---"),
        (promotion_calibration.main, "studies.promotion_calibration",
         "Promotion rule calibration", "rho | true RMSE difference | promoted"),
    ],
)  # fmt: skip
def test_each_study_writes_what_it_prints(
    main: Callable[[list[str]], int],
    module: str,
    title: str,
    table_line: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "results" / "study.md"
    main([*STUDY, "--results", str(path)])
    printed = capsys.readouterr().out.strip()
    written = path.read_text()
    assert written.startswith(f"# {title}\n")
    assert f"- Command: `python -m {module} --data {RAW_DATA} " in written
    assert f"--trials 1 --results {path}`" in written
    assert table_line in printed
    assert written.endswith(f"\n\n{printed}\n")  # the header, then exactly what it printed


def test_without_results_a_study_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial run with other settings must not overwrite the published figures."""

    def refuse(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("wrote a results file without --results")

    monkeypatch.setattr(results, "write", refuse)
    assert promotion_calibration.main(STUDY) == 0


def test_tune_compare_writes_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The committed settings' variants, measured by a stand-in (tuning takes minutes)."""

    def measured(name: str, settings: Any, train: Any, features: list[str]) -> dict[str, Any]:
        return {
            "variant": name, "family": "gradient_boosting", "cv_rmse": 3.1, "nested_rmse": 3.3,
            "seconds": 10.0 if name.endswith("(committed)") else 20.0, "trees": 300,
            "kbytes": 512.0, "score_ms": 80.0,
        }  # fmt: skip

    monkeypatch.chdir(REPO)  # tune_compare reads dvc.yaml and params.yaml where make runs it
    monkeypatch.setattr(tune_compare, "measure", measured)
    monkeypatch.setattr(tune_compare, "read_table", lambda path: synthetic_table(40))
    path = tmp_path / "tune-compare.md"
    tune_compare.main(["--results", str(path)])
    written = path.read_text()
    assert written.startswith(f"# {tune_compare.TITLE}\n")
    assert f"- Command: `python -m tools.tune_compare --results {path}`" in written
    rows = [line for line in written.splitlines() if line.startswith("| ") and "RMSE" not in line]
    assert len(rows) == 4  # committed search, the other search, early stopping, monotone
    assert rows[0].endswith("| 1.00 | 300 | 512 | 80.0 | 1.00 |")
    assert "| 2.00 |" in rows[1]
    assert f"seed {tune_compare.SHUFFLE_SEED}" in written
    printed = capsys.readouterr().out  # progress lines, a blank line, then what it writes
    assert written.endswith(printed.split("\n\n", 1)[1])


def test_the_batch_is_every_tract_in_a_seeded_shuffled_order() -> None:
    tracts = [[float(i), float(i) / 2] for i in range(7)]
    rows = benchmark.batch_rows(tracts, 20, seed=3)
    cycled = [tracts[i % 7] for i in range(20)]
    assert sorted(rows) == sorted(cycled)  # the same rows: each tract about as often
    assert rows != cycled  # but not in file order
    assert rows == benchmark.batch_rows(tracts, 20, seed=3)
    assert rows != benchmark.batch_rows(tracts, 20, seed=4)


def _report(mlflow_ms: float | None) -> str:
    args = argparse.Namespace(
        connections=8, seconds=1, rounds=1, worker_connections=32, batch_repeats=2, seed=11
    )
    one, two = benchmark._worker_runs(args)
    run = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 3.0}
    servers = ("empty FastAPI POST", "/predict", benchmark.PLAIN, benchmark.LIMITED, one, two)
    runs = {name: [run] for name in servers}
    runs[benchmark.PLAIN] = [{**run, "rps": 1250.0}]
    batches = {"our /invocations": [70.0, 72.0], "our /predict/batch": [90.0, 94.0]}
    if mlflow_ms is not None:
        batches["mlflow models serve"] = [mlflow_ms, mlflow_ms]
    steps = {"parse JSON": 10.0, "validate, build matrix": 5.0, "the model's own predict": 40.0}
    card = {"model_version": "abc", "family": "gradient_boosting"}
    return benchmark.report(card, args, runs, batches, steps, tracts=506)


def test_the_benchmark_report_states_the_shuffle_the_target_and_the_steps(tmp_path: Path) -> None:
    text = _report(mlflow_ms=140.0)
    assert "506 tracts of data/raw/HousingData.csv repeated to 10,000 and shuffled" in text
    assert "- /predict with intervals vs without: 80% (rounds: 80%)" in text
    assert "seed 11" in text
    target = next(line for line in text.splitlines() if line.startswith("- Target"))
    assert target.endswith(": MET (71.0 ms vs 140.0 ms, 2.0x)")
    steps = text.splitlines()[text.splitlines().index(target) + 1]  # beside the target
    assert steps.startswith("- /invocations in process (median of 2): parse JSON 10.0 ms + ")
    assert steps.endswith("= 55.0 ms, beside its 71.0 ms round trip")
    assert "MISSED (71.0 ms vs 60.0 ms" in _report(mlflow_ms=60.0)
    assert "not measured (--skip-mlflow)" in _report(mlflow_ms=None)
    path = results.write(tmp_path / "benchmark.md", "Serving benchmark", text, "python -m x")
    assert path.read_text().endswith(f"\n\n{text}\n")


def test_the_benchmark_states_the_predict_floor() -> None:
    def runs(predict: float, mlflow: float) -> dict[str, list[dict[str, float]]]:
        return {
            "empty FastAPI POST": [{"rps": 1000.0}],
            "/predict": [{"rps": predict}],
            "mlflow models serve": [{"rps": mlflow}],
        }

    def floor(predict: float, mlflow: float) -> str:
        measured = runs(predict, mlflow)
        servers = {name: rows[0] for name, rows in measured.items()}
        return benchmark._predict_floor(measured, servers)

    assert floor(450.0, 80.0).endswith(
        ": MET (45% of the empty endpoint, 5.6x mlflow models serve)"
    )
    assert ": MISSED (39% of the empty endpoint" in floor(390.0, 10.0)
    assert ": MISSED (45% of the empty endpoint, 4.5x mlflow" in floor(450.0, 100.0)
