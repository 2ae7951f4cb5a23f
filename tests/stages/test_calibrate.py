"""Calibrate turns the tuned model's out-of-fold errors into the intervals the card serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from conformal import Intervals
from stages.calibrate import calibrate, main
from stages.contract import TARGET, model_features
from stages.families import build
from tests.conftest import REPO, synthetic_table

FEATURES = model_features(["B"])


def _stage_files(folder: Path, level: Any = 0.9, bins: Any = 3) -> list[str]:
    """A working folder with the real dvc.yaml, params of our choosing, a fitted model and its
    training table; returns the stage's command-line arguments."""
    shutil.copyfile(REPO / "dvc.yaml", folder / "dvc.yaml")
    params = {"seed": 3, "tune": {"cv": {"folds": 5}}, "intervals": {"level": level, "bins": bins}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    train = synthetic_table(90, seed=4)
    train.to_csv(folder / "train.csv", index=False)
    model = build("ridge", 1.0, 0).fit(train[FEATURES].to_numpy(), train[TARGET.name].to_numpy())
    joblib.dump(model, folder / "tuned.joblib")
    (folder / "tune.json").write_text(json.dumps({"features": FEATURES}))
    return [
        "--model", "tuned.joblib", "--train", "train.csv", "--tune-report", "tune.json",
        "--intervals", "out/intervals.json", "--oof", "out/oof.csv",
    ]  # fmt: skip


def test_the_stage_writes_the_intervals_and_the_predictions_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main(_stage_files(tmp_path))
    intervals = Intervals.from_dict(json.loads((tmp_path / "out/intervals.json").read_text()))
    assert intervals.level == 0.9 and intervals.upper_limit == TARGET.maximum
    assert len(intervals.half_widths) == 3
    rows = pd.read_csv(tmp_path / "out/oof.csv")
    assert list(rows.columns) == ["actual", "predicted"] and len(rows) == 90
    # the file holds exactly the predictions calibrated on: recalibrating from it agrees
    again = Intervals.calibrate(
        rows["predicted"].to_numpy(),
        rows["actual"].to_numpy(),
        level=0.9,
        bins=3,
        upper_limit=TARGET.maximum,
    )
    assert again == intervals


def test_the_stage_writes_the_same_bytes_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = _stage_files(tmp_path)
    main(argv)
    first = {name: (tmp_path / "out" / name).read_bytes() for name in ("intervals.json", "oof.csv")}
    main(argv)
    assert first == {name: (tmp_path / "out" / name).read_bytes() for name in first}


@pytest.mark.parametrize(
    ("level", "bins", "message"),
    [
        (1.2, 3, r"calibrate: intervals.level must lie strictly between 0 and 1, got 1.2"),
        ("high", 3, r"calibrate: intervals.level must be a number between 0 and 1, got 'high'"),
        (0.9, 0, r"calibrate: intervals.bins must be a whole number >= 1, got 0"),
        (0.9, 2.5, r"calibrate: intervals.bins must be a whole number >= 1, got 2.5"),
        # 90 rows in 11 groups, the smallest of 8: at 0.9 the 9th smallest of 9 residuals is the
        # conformal quantile, so 8 are one too few
        (0.9, 11, r"calibrate: intervals.bins=11 leaves 8 training rows in a group; "
         r"intervals.level=0.9 needs at least 9 per group"),
        # 90 rows in 10 groups of 9: 0.99 needs 99 residuals per group for a finite quantile
        (0.99, 10, r"calibrate: intervals.bins=10 leaves 9 training rows in a group; "
         r"intervals.level=0.99 needs at least 99 per group"),
    ],
)  # fmt: skip
def test_bad_settings_stop_the_stage_with_their_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: Any, bins: Any, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        main(_stage_files(tmp_path, level=level, bins=bins))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_intervals_come_from_out_of_fold_errors(tiny_table: pd.DataFrame) -> None:
    """In-sample residuals are smaller than a new house's: widths from them would under-cover."""
    model = build("ridge", 1.0, 0)
    intervals, rows = calibrate(model, tiny_table, FEATURES, folds=5, seed=0, level=0.9, bins=1)
    actual = tiny_table[TARGET.name].to_numpy()
    fitted = model.fit(tiny_table[FEATURES].to_numpy(), actual)
    in_sample = np.abs(actual - fitted.predict(tiny_table[FEATURES].to_numpy()))
    out_of_fold = np.abs(rows["actual"] - rows["predicted"])
    assert intervals.half_widths[0] == np.sort(out_of_fold)[int(np.ceil(61 * 0.9)) - 1]
    assert intervals.half_widths[0] > np.quantile(in_sample, 0.9)
