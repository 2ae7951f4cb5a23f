"""The drift report on prediction logs: parsing (malformed lines, gzip, several model versions,
omitted optional inputs), windows, too-small windows, exit statuses, advice and an offline page;
then the real thing, traffic through a real server and the report on its log."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser

from artifact import read_card, read_profile
from monitoring.logs import LogReader
from monitoring.report import (
    CANNOT_RUN,
    DRIFT,
    NO_DRIFT,
    drift_status,
    main,
)
from stages.contract import FEATURE_NAMES
from tests.conftest import open_offline, running_api, synthetic_table

START = datetime(2026, 11, 1, tzinfo=UTC)


def log_lines(version: str, table: pd.DataFrame, model_dir: Path | None = None) -> list[str]:
    """Lines as the service writes them, one per prediction, every raw feature sent; predicted by
    the model in `model_dir` when given (a stand-in otherwise)."""
    features = list(FEATURE_NAMES)
    if model_dir is None:
        predictions = [20.0] * len(table)
    else:
        card = read_card(model_dir)
        model = joblib.load(model_dir / card["artifact"]["file"])
        used = card["model_inputs"]
        predictions = model.predict(table[used].to_numpy()).tolist()
    lines = []
    for index, (row, prediction) in enumerate(
        zip(table.to_dict("records"), predictions, strict=True)
    ):
        record = {
            "ts": (START + timedelta(seconds=index)).isoformat(timespec="milliseconds"),
            "event": "prediction", "request_id": f"r{index}", "route": "/predict",
            "model_version": version, "latency_ms": 1.0 + index % 7,
            "inputs": {name: row[name] for name in features}, "prediction": prediction,
        }  # fmt: skip
        lines.append(json.dumps(record))
    return lines


def version_of(model_dir: Path) -> str:
    return str(read_card(model_dir)["model_version"])


def report(model_dir: Path, tmp_path: Path, *args: str) -> int:
    return main(["--model-dir", str(model_dir), "--out", str(tmp_path / "out"), *args])


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_lines_are_counted_and_skipped(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = log_lines(version_of(model_dir), synthetic_table(5, seed=3))
    bad = ["{not json", "[1, 2]", json.dumps({"event": "prediction", "model_version": "x"})]
    # a label: a record, though not one the drift report reads
    other = json.dumps(
        {"ts": START.isoformat(), "event": "feedback", "request_id": "r1", "row": 0, "actual": 20.0}
    )
    log = write(tmp_path / "p.jsonl", [*good[:2], *bad, other, *good[2:]])
    assert report(model_dir, tmp_path, "--log", str(log)) == CANNOT_RUN  # 5 rows: too few
    captured = capsys.readouterr()
    assert "report: warning: skipped 3 malformed line(s): " in captured.err
    assert "p.jsonl: not JSON, or not a JSON object" in captured.err
    assert "p.jsonl: prediction line lacks a usable ts, request_id, route" in captured.err
    assert "too small over 5 rows" in captured.out


def test_gzip_logs_and_several_model_versions(model_dir: Path, tmp_path: Path) -> None:
    plain = write(tmp_path / "a.jsonl", log_lines("aaaa", synthetic_table(3, seed=1)))
    packed = tmp_path / "b.jsonl.gz"
    with gzip.open(packed, "wt") as stream:
        stream.write("\n".join(log_lines("bbbb", synthetic_table(4, seed=2))) + "\n")
    with LogReader([plain, packed], FEATURE_NAMES) as reader:
        reader.load_window()
        assert reader.versions() == {"aaaa": 3, "bbbb": 4}


def test_an_omitted_optional_input_is_a_gap(model_dir: Path, tmp_path: Path) -> None:
    profile = read_profile(model_dir, read_card(model_dir))
    line = json.loads(log_lines(version_of(model_dir), synthetic_table(1))[0])
    del line["inputs"]["CRIM"]
    line["inputs"]["ZN"] = None
    with LogReader([write(tmp_path / "p.jsonl", [json.dumps(line)])], profile["features"]) as log:
        log.load_window()
        window = {name: log.column(line["model_version"], name) for name in profile["features"]}
        predictions = log.column(line["model_version"], "prediction")
    assert np.isnan(window["CRIM"][0]) and np.isnan(window["ZN"][0])
    assert window["RM"][0] == line["inputs"]["RM"] and predictions.size == 1
    assert "B" not in window  # not a model input: never judged


def test_windows_by_time_or_by_count(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "ts": (START + timedelta(minutes=m)).isoformat(),
                "event": "prediction",
                "request_id": f"r{m}",
                "row": 0,
                "route": "/predict",
                "model_version": "v",
                "latency_ms": 1.0,
                "inputs": {},
                "prediction": float(m),
            }
        )
        for m in (3, 1, 2, 0)
    ]
    log = write(tmp_path / "p.jsonl", lines)

    def minutes(**window: Any) -> list[int]:
        with LogReader([log]) as reader:
            reader.load_window(**window)
            return sorted(int(m) for m in reader.column("v", "prediction"))

    assert minutes(since=START + timedelta(minutes=1)) == [1, 2, 3]
    assert minutes(until=START + timedelta(minutes=2)) == [0, 1]
    assert minutes(last=2) == [2, 3]


def test_no_drift_exits_0_and_writes_an_offline_page(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the tiny model's own training distribution, fresh rows
    log = write(
        tmp_path / "p.jsonl", log_lines(version_of(model_dir), synthetic_table(300, 5), model_dir)
    )
    assert report(model_dir, tmp_path, "--log", str(log)) == NO_DRIFT
    assert "no drift over 300 rows" in capsys.readouterr().out
    page = (tmp_path / "out" / f"drift-{version_of(model_dir)}.html").read_text()
    assert re.findall(r"(?:src|href)=\"(?!data:)", page) == []
    assert 'src="data:image/png;base64,' in page
    summary = json.loads((tmp_path / "out" / f"drift-{version_of(model_dir)}.json").read_text())
    assert summary["traffic"]["requests"] == 300
    assert summary["traffic"]["latency_ms"]["p50"] == pytest.approx(4.0)
    assert {column["column"] for column in summary["verdict"]["columns"]} >= {"RM", "prediction"}


def test_drift_exits_1_and_says_what_moved_and_what_next(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shifted = synthetic_table(300, 5)
    shifted["RM"] = (shifted["RM"] + 1.5).clip(upper=15)
    log = write(tmp_path / "p.jsonl", log_lines(version_of(model_dir), shifted, model_dir))
    assert report(model_dir, tmp_path, "--log", str(log)) == DRIFT
    out = capsys.readouterr().out
    assert "DRIFT over 300 rows" in out
    assert re.search(r"^  RM: .*KS D = \d", out, flags=re.MULTILINE)
    assert "dvc repro" in out


def test_a_window_below_the_minimum_is_never_judged(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shifted = synthetic_table(50, 5)
    shifted["RM"] += 3
    log = write(tmp_path / "p.jsonl", log_lines(version_of(model_dir), shifted))
    assert report(model_dir, tmp_path, "--log", str(log)) == CANNOT_RUN
    assert "too small over 50 rows (50 rows, fewer than the minimum of 200)" in (
        capsys.readouterr().out
    )


def test_a_version_without_its_profile_is_not_judged(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "p.jsonl", log_lines("0123456789ab", synthetic_table(300, 5)))
    assert report(model_dir, tmp_path, "--log", str(log)) == CANNOT_RUN
    assert "model 0123456789ab: not judged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5"], "monitoring.alpha must lie strictly between 0 and 1"),
        (["--min-rows", "0"], "monitoring.min_rows must be a whole number >= 1"),
    ],
)
def test_bad_settings_are_named(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    log = write(tmp_path / "p.jsonl", log_lines(version_of(model_dir), synthetic_table(5)))
    assert report(model_dir, tmp_path, "--log", str(log), *args) == CANNOT_RUN
    assert message in capsys.readouterr().err


def test_an_empty_log_cannot_be_judged(model_dir: Path, tmp_path: Path) -> None:
    assert report(model_dir, tmp_path, "--log", str(write(tmp_path / "p.jsonl", []))) == CANNOT_RUN


def test_drift_status_returns_the_verdict_and_writes_the_report(
    model_dir: Path, tmp_path: Path
) -> None:
    """What a caller (the retraining flow) asks for; settings from params.yaml."""
    version = version_of(model_dir)
    shifted = synthetic_table(300, 5)
    shifted["RM"] = (shifted["RM"] + 1.5).clip(upper=15)
    calm = write(tmp_path / "calm", log_lines(version, synthetic_table(300, 5), model_dir))
    moved = write(tmp_path / "moved", log_lines(version, shifted, model_dir))
    assert drift_status([calm], model_dir, tmp_path / "a") == "no drift"
    summary = json.loads((tmp_path / "a" / f"drift-{version}.json").read_text())
    assert summary["status"] == "no drift"
    assert (tmp_path / "a" / f"drift-{version}.html").is_file()
    assert drift_status([calm, moved], model_dir, tmp_path / "b") == "drift"
    assert drift_status([write(tmp_path / "empty", [])], model_dir, tmp_path / "c") == (
        "cannot judge"
    )
    assert drift_status([calm], tmp_path / "no-model", tmp_path / "d") == "cannot judge"


@pytest.mark.e2e
def test_traffic_through_a_real_server_then_the_report(model_dir: Path, tmp_path: Path) -> None:
    """Rows sent to /predict/batch and /predict of a real uvicorn, reported from its own log."""
    log = tmp_path / "predictions.jsonl"
    calm = synthetic_table(220, seed=11)
    moved = synthetic_table(220, seed=12)
    moved["LSTAT"] = (moved["LSTAT"] * 1.8).clip(upper=100)
    with running_api(model_dir, log) as url:
        rows: Any = calm[list(FEATURE_NAMES)].to_dict("records")
        assert httpx.post(f"{url}/predict/batch", json={"rows": rows[:200]}).status_code == 200
        for row in rows[200:]:
            assert httpx.post(f"{url}/predict", json=row).status_code == 200
    first = main(["--log", str(log), "--model-dir", str(model_dir), "--out", str(tmp_path / "a")])
    assert first == NO_DRIFT
    with running_api(model_dir, log) as url:
        rows = moved[list(FEATURE_NAMES)].to_dict("records")
        assert httpx.post(f"{url}/predict/batch", json={"rows": rows}).status_code == 200
    args = ["--log", str(log), "--model-dir", str(model_dir), "--last", "220"]
    assert main([*args, "--out", str(tmp_path / "b")]) == DRIFT
    summary = json.loads(next((tmp_path / "b").glob("drift-*.json")).read_text())
    assert "LSTAT" in summary["verdict"]["drifted"]
    assert summary["traffic"]["rows_by_route"] == {"/predict/batch": 220}


@pytest.mark.e2e
def test_the_report_page_renders_offline_in_a_real_browser(
    model_dir: Path, tmp_path: Path, browser: Browser
) -> None:
    shifted = synthetic_table(300, 5)
    shifted["RM"] = (shifted["RM"] + 1.5).clip(upper=15)
    log = write(tmp_path / "p.jsonl", log_lines(version_of(model_dir), shifted, model_dir))
    assert report(model_dir, tmp_path, "--log", str(log)) == DRIFT
    page, fetched = open_offline(browser, tmp_path / "out" / f"drift-{version_of(model_dir)}.html")
    # the page the report writes is monitoring/page.py's (tested in depth in test_page.py)
    assert page.locator("h1").inner_text() == "Drift found"
    assert page.locator("ul.moved li").first.inner_text().startswith("RM: mean up")
    profile = read_profile(model_dir, read_card(model_dir))
    rows = page.locator("table.columns tbody tr")
    assert rows.count() == len(profile["features"]) + 1  # + prediction
    assert "RM" in page.locator("table.columns tr.moved").first.inner_text()
    figure = page.locator("img")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 600")
    assert fetched == []
    page.close()
