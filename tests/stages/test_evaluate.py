from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.contract import TARGET, model_features
from stages.evaluate import bootstrap_intervals, evaluate, gate_failures, leaderboard_rows, scores
from stages.families import build
from tests.conftest import synthetic_table

FEATURES = model_features(["B"])


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
    report, rows = evaluate(model, test, FEATURES, resamples=200, seed=0)
    figures = report["test"]
    assert figures["rows"] == 30
    for name in ("rmse", "mae", "r2"):
        assert figures[f"{name}_ci95_low"] <= figures[name] <= figures[f"{name}_ci95_high"]
    assert list(rows.columns) == ["actual", "predicted", "residual"]
    assert np.allclose(rows["actual"] - rows["predicted"], rows["residual"], atol=1e-5)


def test_evaluate_names_columns_the_test_split_lacks() -> None:
    train = synthetic_table(40)
    model = build("ridge", 1.0, 0).fit(train[FEATURES].to_numpy(), train[TARGET.name].to_numpy())
    with pytest.raises(ValueError, match=r"lacks the model's column\(s\) \['RM'\]"):
        evaluate(model, train.drop(columns="RM"), FEATURES, resamples=100, seed=0)


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
