from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformal import Intervals
from stages.contract import TARGET, model_features
from stages.evaluate import (
    bootstrap_intervals,
    evaluate,
    gate_failures,
    interval_report,
    leaderboard_rows,
    scores,
)
from stages.families import build
from tests.conftest import synthetic_table

FEATURES = model_features(["B"])
# cheap prices within 1 of their prediction, middle ones within 2, dear ones within 4
STEPPED = Intervals(level=0.9, edges=(15.0, 30.0), half_widths=(1.0, 2.0, 4.0), upper_limit=50.0)


def test_scores_match_hand_computed_values() -> None:
    figures = scores(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert figures["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert figures["mae"] == pytest.approx(0.5)
    assert figures["r2"] == pytest.approx(1 - 4 / 5)


def test_bootstrap_interval_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(20, 5, 200)
    predicted = actual + rng.normal(0, 2, 200)
    point = scores(actual, predicted)
    intervals = bootstrap_intervals(actual, predicted, resamples=500, seed=1)
    for name, (low, high) in intervals.items():
        assert low < point[name] < high
    assert intervals == bootstrap_intervals(actual, predicted, resamples=500, seed=1)


@pytest.mark.parametrize("resamples", [10, 2.5, True])
def test_too_few_resamples_is_named(resamples: int) -> None:
    with pytest.raises(ValueError, match=r"evaluate.bootstrap must be a whole number >= 100"):
        bootstrap_intervals(np.ones(5), np.ones(5), resamples, seed=0)


def test_evaluate_reports_test_figures_and_plot_rows() -> None:
    train, test = synthetic_table(80, seed=1), synthetic_table(30, seed=2)
    model = build("ridge", 1.0, 0).fit(train[FEATURES].to_numpy(), train[TARGET.name].to_numpy())
    report, rows = evaluate(model, test, FEATURES, resamples=200, seed=0, intervals=STEPPED)
    figures = report["test"]
    assert figures["rows"] == 30
    for name in ("rmse", "mae", "r2"):
        assert figures[f"{name}_ci95_low"] <= figures[name] <= figures[f"{name}_ci95_high"]
    assert list(rows.columns) == [
        "actual", "predicted", "residual", "lower", "upper", "upper_censored"
    ]  # fmt: skip
    assert np.allclose(rows["actual"] - rows["predicted"], rows["residual"], atol=1e-5)
    assert (rows["lower"] < rows["predicted"]).all() and (rows["predicted"] < rows["upper"]).all()
    assert report["intervals"]["rows"] == 30 and report["intervals"]["level"] == 0.9


def test_evaluate_names_columns_the_test_split_lacks() -> None:
    train = synthetic_table(40)
    model = build("ridge", 1.0, 0).fit(train[FEATURES].to_numpy(), train[TARGET.name].to_numpy())
    with pytest.raises(ValueError, match=r"lacks the model's column\(s\) \['RM'\]"):
        evaluate(model, train.drop(columns="RM"), FEATURES, 100, seed=0, intervals=STEPPED)


def test_gate_names_each_missed_threshold() -> None:
    assert gate_failures({"rmse": 3.0, "r2": 0.9}, {"max_rmse": 4.0, "min_r2": 0.8}) == []
    failures = gate_failures({"rmse": 5.0, "r2": 0.7}, {"max_rmse": 4.0, "min_r2": 0.8})
    assert failures == [
        "test RMSE 5.000 > evaluate.gate.max_rmse 4.0",
        "test R^2 0.700 < evaluate.gate.min_r2 0.8",
    ]


def test_leaderboard_rows_are_sorted_best_first() -> None:
    report = {"families": {
        "a": {"cv_rmse_mean": 4.0, "cv_rmse_std": 1.0},
        "b": {"cv_rmse_mean": 3.0, "cv_rmse_std": 0.5},
    }}  # fmt: skip
    rows = leaderboard_rows(report)
    assert list(rows["family"]) == ["b", "a"]
    assert isinstance(rows, pd.DataFrame)


def test_interval_report_counts_coverage_and_width_per_predicted_third() -> None:
    predicted = np.array([10.0, 11.0, 12.0, 20.0, 21.0, 22.0, 40.0, 41.0, 42.0])
    # the cheap third all inside (+-1), the middle third one miss (off by 3 > 2), the dear third
    # two misses (off by 5 > 4)
    actual = predicted + np.array([0.5, -0.5, 1.0, 0.0, 3.0, -1.0, 5.0, -5.0, 0.0])
    report, rows = interval_report(STEPPED, actual, predicted)
    assert report["level"] == 0.9 and report["rows"] == 9
    assert report["coverage"] == pytest.approx(6 / 9, abs=1e-6)
    assert report["coverage_ci95_low"] < report["coverage"] < report["coverage_ci95_high"]
    thirds = report["by_predicted_third"]
    assert [thirds[name]["coverage"] for name in ("low", "middle", "high")] == pytest.approx(
        [1.0, 2 / 3, 1 / 3], abs=1e-6
    )
    assert thirds["low"]["coverage_ci95_high"] == 1.0
    assert [thirds[name]["width_mean"] for name in ("low", "middle", "high")] == [2.0, 4.0, 8.0]
    assert [thirds[name]["rows"] for name in ("low", "middle", "high")] == [3, 3, 3]
    assert report["width_mean"] == pytest.approx(14 / 3, abs=1e-6)
    assert report["width_median"] == 4.0
    assert list(rows["lower"]) == list(predicted - np.repeat([1.0, 2.0, 4.0], 3))


def test_a_price_at_the_ceiling_is_inside_an_open_ended_interval() -> None:
    """MEDV 50.0 means "50 or more": an interval reaching 50 covers it, however far off."""
    predicted, actual = np.array([10.0, 11.0, 47.0]), np.array([10.0, 11.0, 50.0])
    report, rows = interval_report(STEPPED, actual, predicted)
    assert report["coverage"] == 1.0 and report["upper_censored"] == 1
    assert list(rows["upper_censored"]) == [False, False, True]
    assert rows["upper"].iloc[2] == 50.0
    # the open-ended interval's width counts up to the ceiling: 50 - (47 - 4)
    assert report["by_predicted_third"]["high"]["width_mean"] == 7.0


def test_the_interval_report_needs_a_row_per_third() -> None:
    with pytest.raises(ValueError, match="the test split has 2 rows; the interval report needs 3"):
        interval_report(STEPPED, np.ones(2), np.ones(2))
