"""Evaluate: score the tuned Pipeline once on the held-out test split, with bootstrap intervals.

It writes the test figures next to the cross-validated ones from tune, the realised coverage and
width of the calibrated prediction intervals (overall and per third of the predicted price), the
plot data DVC renders, and then applies the quality gate: a model that misses it never reaches
export.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

from conformal import Intervals, covered, wilson
from stages.contract import TARGET
from stages.files import load_params, read_json, read_table, write_json

_DIGITS = 6
_LEVEL = 0.95
# The thirds of the predicted price the interval figures are broken down by, cheapest first.
THIRDS = ("low", "middle", "high")


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)),
    }


def bootstrap_intervals(
    actual: np.ndarray, predicted: np.ndarray, resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each score over test rows resampled with replacement."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"evaluate.bootstrap must be a whole number >= 100, got {resamples!r}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(actual), size=(resamples, len(actual)))
    samples = [scores(actual[rows], predicted[rows]) for rows in draws]
    tail = (1.0 - _LEVEL) / 2 * 100
    return {
        name: (
            float(np.percentile([s[name] for s in samples], tail)),
            float(np.percentile([s[name] for s in samples], 100 - tail)),
        )
        for name in ("rmse", "mae", "r2")
    }


def _coverage(inside: np.ndarray, width: np.ndarray) -> dict[str, Any]:
    low, high = wilson(int(inside.sum()), len(inside))
    return {
        "coverage": round(float(inside.mean()), _DIGITS),
        "coverage_ci95_low": round(low, _DIGITS),
        "coverage_ci95_high": round(high, _DIGITS),
        "width_mean": round(float(width.mean()), _DIGITS),
        "rows": len(inside),
    }


def interval_report(
    intervals: Intervals, actual: np.ndarray, predicted: np.ndarray
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Realised coverage (with its 95% Wilson interval) and width of the intervals on held-out
    rows, overall and per third of the predicted price; and each row's bounds.

    An open-ended interval (upper bound at the censoring point) counts its width up to that point
    and covers a price recorded there.
    """
    if len(actual) < len(THIRDS):
        raise ValueError(f"the test split has {len(actual)} rows; the interval report needs 3")
    bounds = intervals.many(predicted)
    inside = covered(actual, bounds.lower, bounds.upper, bounds.upper_censored)
    width = bounds.upper - bounds.lower
    report: dict[str, Any] = {
        "level": intervals.level,
        **_coverage(inside, width),
        "width_median": round(float(np.median(width)), _DIGITS),
        "upper_censored": int(bounds.upper_censored.sum()),
    }
    # thirds of the rows ranked by predicted price (ties broken by row order), equal in size
    order = np.argsort(predicted, kind="stable")
    report["by_predicted_third"] = {
        name: _coverage(inside[rows], width[rows])
        for name, rows in zip(THIRDS, np.array_split(order, len(THIRDS)), strict=True)
    }
    rows = pd.DataFrame(
        {"lower": bounds.lower, "upper": bounds.upper, "upper_censored": bounds.upper_censored}
    )
    return report, rows


def evaluate(
    model: Pipeline,
    test: pd.DataFrame,
    features: list[str],
    resamples: int,
    seed: int,
    intervals: Intervals,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Return the test figures and the per-row plot data (actual, predicted, residual, bounds)."""
    missing = [name for name in features if name not in test.columns]
    if missing:
        raise ValueError(f"the test split lacks the model's column(s) {missing}")
    actual = test[TARGET.name].to_numpy(dtype=np.float64)
    predicted = model.predict(test[features].to_numpy(dtype=np.float64))
    figures: dict[str, Any] = {"rows": len(test)}
    score_intervals = bootstrap_intervals(actual, predicted, resamples, seed)
    for name, value in scores(actual, predicted).items():
        low, high = score_intervals[name]
        figures[name] = round(value, _DIGITS)
        figures[f"{name}_ci95_low"] = round(low, _DIGITS)
        figures[f"{name}_ci95_high"] = round(high, _DIGITS)
    coverage, bounds = interval_report(intervals, actual, predicted)
    rows = pd.DataFrame({"actual": actual, "predicted": predicted, "residual": actual - predicted})
    rows = pd.concat([rows, bounds], axis="columns")
    return {"test": figures, "intervals": coverage}, rows.round(_DIGITS)


def gate_failures(test: dict[str, Any], gate: dict[str, Any]) -> list[str]:
    """Each unmet threshold, named by its params key."""
    failures = []
    if test["rmse"] > gate["max_rmse"]:
        failures.append(f"test RMSE {test['rmse']:.3f} > evaluate.gate.max_rmse {gate['max_rmse']}")
    if test["r2"] < gate["min_r2"]:
        failures.append(f"test R^2 {test['r2']:.3f} < evaluate.gate.min_r2 {gate['min_r2']}")
    return failures


def leaderboard_rows(tune_report: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"family": name, "cv_rmse_mean": entry["cv_rmse_mean"], "cv_rmse_std": entry["cv_rmse_std"]}
        for name, entry in tune_report["families"].items()
    ]
    return pd.DataFrame(rows).sort_values(["cv_rmse_mean", "family"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--tune-report", type=Path, required=True)
    parser.add_argument("--intervals", type=Path, required=True, help="calibrate's intervals")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--leaderboard", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("evaluate")

    tune_report = read_json(args.tune_report)
    try:
        report, rows = evaluate(
            joblib.load(args.model),
            read_table(args.test),
            tune_report["features"],
            params["evaluate"]["bootstrap"],
            params["seed"],
            Intervals.from_dict(read_json(args.intervals)),
        )
    except ValueError as error:
        sys.exit(f"evaluate: {error}")
    best = tune_report["best"]
    report["cv"] = {
        key: best[key]
        for key in (
            "family",
            "cv_rmse_mean",
            "cv_rmse_std",
            "nested_cv_rmse_mean",
            "nested_cv_rmse_std",
        )
        if key in best
    }
    failures = gate_failures(report["test"], params["evaluate"]["gate"])
    report["gate"] = {**params["evaluate"]["gate"], "passed": not failures}

    write_json(args.report, report)
    for frame, path in (
        (rows, args.predictions),
        (leaderboard_rows(tune_report), args.leaderboard),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, lineterminator="\n")
    if failures:
        sys.exit("evaluate: quality gate failed, the model is not exported: " + "; ".join(failures))


if __name__ == "__main__":
    main()
