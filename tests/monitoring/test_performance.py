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
from conformal import Interval, wilson
from monitoring.performance import (
    CANNOT_RUN,
    DEGRADED,
    NOT_DEGRADED,
    degraded,
    main,
    performance_status,
    rmse_interval,
)
from prediction_log import PredictionLog
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


# ------------------------------------------------------------------ coverage of the intervals

# Errors N(0, 1) around an interval of +-1.645 cover 90% of labels; +-0.8416 covers 60%.
CALIBRATED_HALF, SIXTY_PERCENT_HALF = 1.6449, 0.8416


def with_intervals(
    version: str,
    errors: np.ndarray,
    half_width: float,
    start: datetime = DAY,
    prefix: str = "i",
    level: float = 0.9,
) -> list[dict[str, Any]]:
    """As `served`, each prediction logged with an interval of 20 +- half_width at `level`."""
    lines = served(version, errors, start, prefix)
    for line in lines[::2]:
        line.update(lower=20.0 - half_width, upper=20.0 + half_width, upper_censored=False,
                    level=level)  # fmt: skip
    return lines


def test_coverage_per_window_with_its_wilson_interval(card_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    first = with_intervals(version(card_dir), rng.normal(0, 1.0, 120), CALIBRATED_HALF)
    second = with_intervals(
        version(card_dir), rng.normal(0, 1.0, 80), SIXTY_PERCENT_HALF, DAY + timedelta(days=1),
        "j",
    )  # fmt: skip
    _, report = run(write(tmp_path / "l", first + second), card_dir, tmp_path)
    windows = report["windows"]
    for window, lines in zip(windows, (first, second), strict=True):
        labels = [line["actual"] for line in lines[1::2]]
        lower, upper = lines[0]["lower"], lines[0]["upper"]
        hits = sum(lower <= actual <= upper for actual in labels)
        low, high = wilson(hits, len(labels))
        assert window["coverage"] == {
            "rows": len(labels),
            "covered": hits,
            "coverage": round(hits / len(labels), 4),
            "coverage_ci95": [round(low, 4), round(high, 4)],
            "nominal_coverage": 0.9,
        }
    assert windows[0]["coverage"]["coverage"] > windows[1]["coverage"]["coverage"]
    (figures,) = report["coverage"]["model_versions"].values()
    assert figures["labels"] == 200
    assert figures["covered"] == sum(w["coverage"]["covered"] for w in windows)


def test_an_open_ended_interval_covers_a_price_recorded_as_50(
    card_dir: Path, tmp_path: Path
) -> None:
    lines = with_intervals(version(card_dir), np.array([30.0, 31.0]), 5.0)
    for line in lines[::2]:
        line.update(prediction=47.0, lower=42.0, upper=50.0, upper_censored=True)
    lines[1]["actual"], lines[3]["actual"] = 50.0, 41.0  # inside (censored top), below the lower
    _, report = run(write(tmp_path / "l", lines), card_dir, tmp_path, "--min-rows", "1")
    assert report["windows"][0]["coverage"]["covered"] == 1


def test_labels_of_lines_without_an_interval_are_left_out_and_counted(
    card_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(22)
    older = served(version(card_dir), rng.normal(0, 1.0, 100), prefix="old")
    newer = with_intervals(version(card_dir), rng.normal(0, 1.0, 50), CALIBRATED_HALF)
    _, report = run(write(tmp_path / "l", older + newer), card_dir, tmp_path)
    (window,) = report["windows"]
    assert window["labelled_rows"] == 150 and window["coverage"]["rows"] == 50
    assert report["coverage"]["labels_without_interval"] == 100
    assert "100 labelled predictions were logged without an interval" in capsys.readouterr().out
    # a log without any interval: no coverage figures, and the RMSE verdict as before
    status, report = run(write(tmp_path / "l", older), card_dir, tmp_path)
    assert report["windows"][0]["coverage"] is None
    assert report["coverage"]["model_versions"] == {}
    assert status == NOT_DEGRADED


def test_calibrated_intervals_raise_no_alarm(card_dir: Path, tmp_path: Path) -> None:
    errors = np.random.default_rng(23).normal(0, 1.0, 300)
    lines = with_intervals(version(card_dir), errors, CALIBRATED_HALF)
    status, report = run(write(tmp_path / "l", lines), card_dir, tmp_path)
    figures = report["coverage"]["model_versions"][version(card_dir)]
    assert figures["alarm"] is False and figures["alarm_at_label"] is None
    assert figures["max_e_value"] < figures["threshold"] == pytest.approx(20)
    assert status == NOT_DEGRADED


def test_a_coverage_alarm_of_the_cards_model_exits_as_degraded(
    card_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Errors as small as the card's (the RMSE window is ok), intervals covering 60%."""
    errors = np.random.default_rng(24).normal(0, 1.0, 300)
    lines = with_intervals(version(card_dir), errors, SIXTY_PERCENT_HALF)
    status, report = run(write(tmp_path / "l", lines), card_dir, tmp_path)
    assert report["windows"][0]["status"] == "ok"
    figures = report["coverage"]["model_versions"][version(card_dir)]
    assert figures["alarm"] is True and figures["max_e_value"] >= 20
    assert status == DEGRADED
    out = capsys.readouterr().out
    assert "COVERAGE ALARM" in out and "intervals miss more often" in out
    assert performance_status([tmp_path / "l"], card_dir, tmp_path / "s") == "degraded"


def test_another_models_coverage_alarm_is_reported_not_judged(
    card_dir: Path, tmp_path: Path
) -> None:
    errors = np.random.default_rng(25).normal(0, 1.0, 300)
    lines = with_intervals("0123456789ab", errors, SIXTY_PERCENT_HALF)
    status, report = run(write(tmp_path / "l", lines), card_dir, tmp_path)
    assert report["coverage"]["model_versions"]["0123456789ab"]["alarm"] is True
    assert status == CANNOT_RUN


def test_the_verdict_does_not_depend_on_how_the_log_grew_between_runs(
    card_dir: Path, tmp_path: Path
) -> None:
    """The report run after every batch of labels reaches the verdict one run over the whole log
    reaches, and an alarm once raised stays raised."""
    rng = np.random.default_rng(26)
    errors = rng.normal(0, 1.0, 400)
    half_widths = np.where(np.arange(400) < 150, CALIBRATED_HALF, SIXTY_PERCENT_HALF)
    lines = [
        line
        for index, (error, half) in enumerate(zip(errors, half_widths, strict=True))
        for line in with_intervals(
            version(card_dir), np.array([error]), half, DAY + timedelta(minutes=index), f"r{index}"
        )
    ]
    log = tmp_path / "growing"
    verdicts = []
    cut = 0
    for size in (23, 50, 50, 77, 100, 100):  # labels appended between runs
        with log.open("a") as stream:
            stream.writelines(json.dumps(line) + "\n" for line in lines[2 * cut : 2 * (cut + size)])
        cut += size
        _, report = run(log, card_dir, tmp_path)
        verdicts.append(report["coverage"]["model_versions"][version(card_dir)])
    _, whole = run(write(tmp_path / "whole", lines), card_dir, tmp_path)
    assert verdicts[-1] == whole["coverage"]["model_versions"][version(card_dir)]
    alarms = [figures["alarm"] for figures in verdicts]
    assert alarms[0] is False and alarms[-1] is True
    first = alarms.index(True)
    assert all(alarms[first:])
    assert {figures["alarm_at_label"] for figures in verdicts[first:]} == {
        verdicts[-1]["alarm_at_label"]
    }
    assert verdicts[-1]["alarm_at_label"] > 150  # after the intervals began to miss


def test_the_services_writer_logs_intervals_the_report_reads(
    card_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "service.jsonl"
    writer = PredictionLog(str(log), 1.0)
    writer.record(
        request_id="b", route="/predict/batch", model_version=version(card_dir),
        inputs=[{}, {}, {}], predictions=[20.0, 30.0, 48.0], latency_ms=1.0,
        intervals=[Interval(18.0, 22.0, False), Interval(27.0, 33.0, False),
                   Interval(44.0, 50.0, True)],
        level=0.9,
    )  # fmt: skip
    writer.append([
        {"ts": DAY.isoformat(), "event": "feedback", "request_id": "b", "row": row,
         "actual": actual}
        for row, actual in enumerate((21.0, 35.0, 50.0))
    ])  # fmt: skip
    writer.close()
    _, report = run(log, card_dir, tmp_path, "--min-rows", "1")
    figures = report["coverage"]["model_versions"][version(card_dir)]
    assert (figures["labels"], figures["covered"]) == (3, 2)
