"""What starts a retraining: the command line's subcommands, and monitoring's verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows import cli as module
from flows.retrain import Outcome, gather
from monitoring import performance, report
from stages.ingest import DataValidationError


@pytest.mark.parametrize(
    ("drift", "degraded", "wanted"),
    [
        ("no drift", "ok", False),
        ("cannot judge", "cannot judge", False),
        ("drift", "ok", True),
        ("no drift", "degraded", True),
    ],
)
def test_a_drift_or_degraded_verdict_asks_for_retraining(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, drift: str, degraded: str, wanted: bool
) -> None:
    asked: list[tuple[list[Path], Path, Path]] = []

    def verdict(status: str) -> Any:
        def judge(logs: list[Path], model_dir: Path, out: Path) -> str:
            asked.append((list(logs), model_dir, out))
            return status

        return judge

    monkeypatch.setattr(report, "drift_status", verdict(drift))
    monkeypatch.setattr(performance, "performance_status", verdict(degraded))
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    assert module.wants_retraining(logs, tmp_path / "models", tmp_path / "out") is wanted
    # both reports judge the same logs against the served model
    expected = (logs, tmp_path / "models", tmp_path / "out")
    assert asked == [expected, expected]


def test_on_verdict_without_a_verdict_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(module, "wants_retraining", lambda *args: False)

    def must_not_run(**settings: Any) -> None:
        raise AssertionError(f"the flow ran with {settings}")

    monkeypatch.setattr(module, "retrain", must_not_run)
    code = module.main(["on-verdict", "--log", str(tmp_path / "p.jsonl"), "--new-data", "x.csv"])
    assert code == 0
    assert "nothing to retrain" in capsys.readouterr().out


def test_on_verdict_with_a_verdict_runs_the_flow_with_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(module, "wants_retraining", lambda *args: True)
    runs: list[dict[str, Any]] = []

    def flow(**settings: Any) -> Outcome:
        runs.append(settings)
        return Outcome("nothing new", "test")

    monkeypatch.setattr(module, "retrain", flow)
    argv = ["on-verdict", "--log", str(tmp_path / "p.jsonl"), "--new-data", "in/",
            "--service-url", "http://127.0.0.1:1", "--margin", "0.3"]  # fmt: skip
    assert module.main(argv) == 0
    assert runs == [{"new_data": Path("in/"), "feedback": None, "margin": 0.3, "serve_dir": None,
                     "service_url": "http://127.0.0.1:1"}]  # fmt: skip


def test_a_subcommand_is_required() -> None:
    with pytest.raises(SystemExit) as exit_:
        module.main([])
    assert exit_.value.code == 2


@pytest.mark.parametrize("name", ["missing.csv", "empty-folder"])
def test_new_data_that_is_not_there_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(DataValidationError, match=name):
        gather.fn(tmp_path / name, tmp_path)
