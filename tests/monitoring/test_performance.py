"""The realised-performance report: predictions joined with labels, windows, the degraded rule,
exit statuses; and the same metric code as the evaluate stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.schemas import FIRST_TRACT
from api.settings import Settings
from monitoring.performance import (
    CANNOT_RUN,
    DEGRADED,
    NOT_DEGRADED,
    degraded,
    main,
    performance_status,
    rmse_interval,
)
from stages.evaluate import bootstrap_intervals

DAY = datetime(2026, 11, 2, tzinfo=UTC)
CARD_TEST = {"rmse": 1.0, "rmse_ci95_low": 0.85, "rmse_ci95_high": 1.15, "mae": 0.8}


@pytest.fixture
def card_dir(model_dir: Path) -> Path:
    """The tiny model's folder, its card given a test RMSE of 1.0 [0.85, 1.15]."""
    path = model_dir / "model_card.json"
    card = json.loads(path.read_text())
    card["metrics"]["test"].update(CARD_TEST)
    path.write_text(json.dumps(card))
    return model_dir


def version(card_dir: Path) -> str:
    return str(json.loads((card_dir / "model_card.json").read_text())["model_version"])


def served(
    version: str, errors: np.ndarray, start: datetime = DAY, prefix: str = "r"
) -> list[dict[str, Any]]:
    """A prediction of 20 per request and a label off by each error, in the service's format."""
    lines: list[dict[str, Any]] = []
    for index, error in enumerate(errors):
        request_id = f"{prefix}{index}"
        ts = (start + timedelta(minutes=index)).isoformat()
        lines.append({"ts": ts, "event": "prediction", "request_id": request_id, "row": 0,
                      "route": "/predict", "model_version": version, "latency_ms": 1.0,
                      "prediction": 20.0, "inputs": {}})  # fmt: skip
        lines.append({"ts": ts, "event": "feedback", "request_id": request_id, "row": 0,
                      "actual": 20.0 + float(error)})  # fmt: skip
    return lines


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(log: Path, card_dir: Path, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "out"
    status = main(["--log", str(log), "--model-dir", str(card_dir), "--out", str(out), *extra])
    report = json.loads((out / "performance.json").read_text()) if out.exists() else {}
    return status, report


def test_a_model_as_good_as_its_card_is_not_degraded(card_dir: Path, tmp_path: Path) -> None:
    errors = np.random.default_rng(1).normal(0, 1.0, 300)
    status, report = run(
        write(tmp_path / "l", served(version(card_dir), errors)), card_dir, tmp_path
    )
    assert status == NOT_DEGRADED
    (window,) = report["windows"]
    assert window["status"] == "ok" and window["labelled_rows"] == 300
    assert window["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), abs=1e-4)
    assert window["mae"] == pytest.approx(np.mean(np.abs(errors)), abs=1e-4)
    assert window["card_test_rmse_ci95"] == [0.85, 1.15]


def test_errors_twice_the_cards_are_degraded(
    card_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    errors = np.random.default_rng(2).normal(0, 2.0, 300)
    status, report = run(
        write(tmp_path / "l", served(version(card_dir), errors)), card_dir, tmp_path
    )
    assert status == DEGRADED
    assert report["windows"][0]["status"] == "degraded"
    assert report["windows"][0]["rmse_ci95"][0] > 1.15
    assert "DEGRADED" in capsys.readouterr().out


def test_too_few_labels_are_not_judged(card_dir: Path, tmp_path: Path) -> None:
    errors = np.random.default_rng(3).normal(0, 3.0, 99)
    status, report = run(
        write(tmp_path / "l", served(version(card_dir), errors)), card_dir, tmp_path
    )
    assert status == CANNOT_RUN
    assert report["windows"][0]["status"] == "too small"
    assert "99 labelled rows, fewer than 100" in report["windows"][0]["reason"]


def test_the_latest_window_decides(card_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    lines = served(version(card_dir), rng.normal(0, 2.5, 200), DAY - timedelta(days=1), "old")
    lines += served(version(card_dir), rng.normal(0, 1.0, 200), DAY, "new")
    status, report = run(write(tmp_path / "l", lines), card_dir, tmp_path)
    assert [w["status"] for w in report["windows"]] == ["degraded", "ok"]
    assert status == NOT_DEGRADED
    # windows start at whole multiples of their length since 1970: 1 and 2 November share one
    status, report = run(write(tmp_path / "l", lines), card_dir, tmp_path, "--window", "2d")
    assert len(report["windows"]) == 1 and report["windows"][0]["labelled_rows"] == 400


def test_another_models_window_is_reported_not_judged(card_dir: Path, tmp_path: Path) -> None:
    errors = np.random.default_rng(5).normal(0, 3.0, 200)
    status, report = run(write(tmp_path / "l", served("0123456789ab", errors)), card_dir, tmp_path)
    assert status == CANNOT_RUN
    assert report["windows"][0]["status"] == "not judged"


def test_labels_join_by_request_and_row_the_last_one_counting(
    card_dir: Path, tmp_path: Path
) -> None:
    shared = {"ts": DAY.isoformat(), "route": "/predict", "model_version": version(card_dir),
              "latency_ms": 1.0, "inputs": {}}  # fmt: skip
    ts = DAY.isoformat()
    lines: list[dict[str, Any]] = [
        # a batch of three rows, numbered; then a log line from before rows were numbered
        *({**shared, "event": "prediction", "request_id": "batch", "row": row,
           "prediction": 10.0 * (row + 1)} for row in range(3)),
        *({**shared, "event": "prediction", "request_id": "old", "prediction": p}
          for p in (5.0, 6.0)),
        {"ts": ts, "event": "feedback", "request_id": "batch", "row": 2, "actual": 99.0},
        {"ts": ts, "event": "feedback", "request_id": "batch", "row": 2, "actual": 31.0},  # fixed
        {"ts": ts, "event": "feedback", "request_id": "batch", "row": 0, "actual": 12.0},
        {"ts": ts, "event": "feedback", "request_id": "old", "row": 1, "actual": 7.0},
        {"ts": ts, "event": "feedback", "request_id": "nobody", "row": 0, "actual": 20.0},
    ]  # fmt: skip
    log = write(tmp_path / "l", lines)
    with log.open("a") as stream:
        stream.write("not json\n")
    status, report = run(log, card_dir, tmp_path, "--min-rows", "1")
    assert (report["unknown_labels"], report["repeated_labels"], report["malformed_lines"]) == (
        1, 1, 1,
    )  # fmt: skip
    (window,) = report["windows"]
    # errors: batch row 2: 31 - 30, row 0: 12 - 10, old row 1: 7 - 6
    assert window["labelled_rows"] == 3
    assert window["mae"] == pytest.approx((1 + 2 + 1) / 3, abs=1e-4)
    assert status == NOT_DEGRADED


def test_a_bad_window_is_named(card_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--log", str(tmp_path / "l"), "--window", "1w"])
    assert exit_.value.code == 2


def test_labels_sent_to_the_service_join_its_own_predictions(
    card_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "service.jsonl"
    settings = Settings(model_dir=card_dir, log_sink=str(log))
    rng = np.random.default_rng(6)
    with TestClient(create_app(settings)) as client:
        for _ in range(60):
            answer = client.post("/predict", json=FIRST_TRACT)
            actual = answer.json()["prediction"] + rng.normal(0, 1.0)
            client.post(
                "/feedback",
                json={"request_id": answer.headers["X-Request-ID"], "actual": actual},
            )
        batch = client.post("/predict/batch", json={"rows": [FIRST_TRACT] * 60})
        request_id, predictions = batch.headers["X-Request-ID"], batch.json()["predictions"]
        labels = [
            {"request_id": request_id, "row": row, "actual": value + rng.normal(0, 1.0)}
            for row, value in enumerate(predictions)
        ]
        assert client.post("/feedback", json=labels).json()["unknown"] == 0
    status, report = run(log, card_dir, tmp_path)
    assert report["labels"] == 120 and report["unknown_labels"] == 0
    assert sum(window["labelled_rows"] for window in report["windows"]) == 120
    assert status in (NOT_DEGRADED, CANNOT_RUN)  # 120 labels may straddle a day's boundary
    assert all(window["status"] in ("ok", "too small") for window in report["windows"])


def test_the_interval_is_drawn_as_the_evaluate_stage_draws_it() -> None:
    rng = np.random.default_rng(7)
    actual, predicted = rng.normal(20, 5, 101), rng.normal(20, 5, 101)
    ours = rmse_interval(actual - predicted, 500, np.random.default_rng(11))
    theirs = bootstrap_intervals(actual, predicted, 500, seed=11)["rmse"]
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_the_rule_needs_the_whole_interval_above_and_enough_rows() -> None:
    assert degraded((1.2, 1.6), card_upper=1.15, rows=100, min_rows=100)
    assert not degraded((1.1, 1.6), card_upper=1.15, rows=100, min_rows=100)
    assert not degraded((1.2, 1.6), card_upper=1.15, rows=99, min_rows=100)


def test_performance_status_returns_the_verdict_and_writes_the_report(
    card_dir: Path, tmp_path: Path
) -> None:
    """What a caller (the retraining flow) asks for; settings from params.yaml."""
    rng = np.random.default_rng(9)
    healthy = write(tmp_path / "ok", served(version(card_dir), rng.normal(0, 1.0, 200)))
    worse = write(tmp_path / "worse", served(version(card_dir), rng.normal(0, 2.5, 200)))
    assert performance_status([healthy], card_dir, tmp_path / "a") == "ok"
    report = json.loads((tmp_path / "a" / "performance.json").read_text())
    assert report["windows"][0]["status"] == "ok"
    assert performance_status([worse], card_dir, tmp_path / "b") == "degraded"
    few = write(tmp_path / "few", served(version(card_dir), rng.normal(0, 1.0, 10)))
    assert performance_status([few], card_dir, tmp_path / "c") == "cannot judge"
    assert performance_status([healthy], tmp_path / "no-model", tmp_path / "d") == "cannot judge"
