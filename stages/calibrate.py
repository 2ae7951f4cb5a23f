"""Calibrate: the tuned Pipeline's conformal prediction intervals, from its out-of-fold errors.

Every training row is predicted by the Pipeline refitted without that row's fold, and those
out-of-fold predictions calibrate the intervals (conformal.py: Mondrian cross-conformal by
predicted price), so no row is held back from the served model. The same predictions are the
reference profile's (export reads them): computed once, here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_predict

from conformal import Intervals, check_settings
from stages.contract import TARGET
from stages.files import load_params, read_json, read_table, write_json


def out_of_fold_predictions(
    model: Any, train: pd.DataFrame, features: list[str], folds: int, seed: int
) -> np.ndarray:
    """Each training row predicted by the model refitted without that row's fold.

    In-sample predictions would be tighter than any the model makes on new houses: intervals
    calibrated on them would under-cover, and the drift test would cry wolf.
    """
    X = train[features].to_numpy(dtype=np.float64)
    y = train[TARGET.name].to_numpy(dtype=np.float64)
    splits = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(clone(model), X, y, cv=splits, n_jobs=-1))


def calibrate(
    model: Any,
    train: pd.DataFrame,
    features: list[str],
    *,
    folds: int,
    seed: int,
    level: float,
    bins: int,
) -> tuple[Intervals, pd.DataFrame]:
    """The intervals and the out-of-fold rows (actual, predicted) they were calibrated on."""
    check_settings(level, bins)  # before the folds are fitted, not after
    predicted = out_of_fold_predictions(model, train, features, folds, seed)
    actual = train[TARGET.name].to_numpy(dtype=np.float64)
    intervals = Intervals.calibrate(
        predicted, actual, level=level, bins=bins, upper_limit=TARGET.maximum
    )
    return intervals, pd.DataFrame({"actual": actual, "predicted": predicted})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--tune-report", type=Path, required=True)
    parser.add_argument("--intervals", type=Path, required=True)
    parser.add_argument("--oof", type=Path, required=True, help="the out-of-fold predictions CSV")
    args = parser.parse_args(argv)
    params = load_params("calibrate")

    settings = params["intervals"]
    try:
        intervals, rows = calibrate(
            joblib.load(args.model),
            read_table(args.train),
            read_json(args.tune_report)["features"],
            folds=params["tune"]["cv"]["folds"],
            seed=params["seed"],
            level=settings["level"],
            bins=settings["bins"],
        )
    except ValueError as error:
        sys.exit(f"calibrate: {error}")
    write_json(args.intervals, intervals.as_dict())
    args.oof.parent.mkdir(parents=True, exist_ok=True)
    # Full precision: export's reference profile reads these exact predictions back.
    rows.to_csv(args.oof, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
