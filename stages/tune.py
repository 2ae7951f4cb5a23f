"""Tune: GridSearchCV with repeated K-fold per model family, on the training split only.

Every family is scored on the same folds; the leaderboard goes to metrics/tune.json and the chosen
family's Pipeline, refitted on the whole training split, to the intermediate model file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, RepeatedKFold
from sklearn.pipeline import Pipeline

from stages.contract import TARGET, model_features
from stages.families import FAMILIES, build, param_grid
from stages.files import load_params, read_table, write_json

_SCORING = {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2"}
_DIGITS = 6  # rounding keeps metrics files stable against last-bit noise


@dataclass(frozen=True)
class TuneSettings:
    families: list[str]
    grids: dict[str, dict[str, list[Any]]]
    folds: int
    repeats: int
    family: str  # "auto" or one of `families`
    alpha: float
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TuneSettings:
        tune, model = params["tune"], params["model"]
        settings = cls(
            families=list(tune["families"]),
            grids=dict(tune["grids"]),
            folds=tune["cv"]["folds"],
            repeats=tune["cv"]["repeats"],
            family=model["family"],
            alpha=model["alpha"],
            seed=params["seed"],
        )
        settings.check()
        return settings

    def check(self) -> None:
        unknown = [name for name in self.families if name not in FAMILIES]
        if not self.families or unknown:
            raise ValueError(
                f"tune.families must list known families, got unknown {unknown or 'none'}; "
                f"choose from {list(FAMILIES)}"
            )
        if self.family != "auto" and self.family not in self.families:
            raise ValueError(
                f"model.family {self.family!r} must be 'auto' or one of tune.families "
                f"{self.families}"
            )
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            raise ValueError(f"model.alpha must be a number, got {self.alpha!r}")
        if not self.alpha > 0:
            raise ValueError(f"model.alpha must be greater than 0, got {self.alpha}")
        for key, value, least in (("folds", self.folds, 2), ("repeats", self.repeats, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"tune.cv.{key} must be a whole number >= {least}, got {value!r}")


def tune(
    train: pd.DataFrame, features: list[str], settings: TuneSettings
) -> tuple[dict[str, Any], Pipeline]:
    """Search every family on the same folds; return the leaderboard and the chosen Pipeline."""
    if len(train) < settings.folds:
        raise ValueError(
            f"tune.cv.folds is {settings.folds} but the training split has {len(train)} rows"
        )
    X = train[features].to_numpy(dtype=np.float64)
    y = train[TARGET.name].to_numpy(dtype=np.float64)
    folds = RepeatedKFold(
        n_splits=settings.folds, n_repeats=settings.repeats, random_state=settings.seed
    )

    leaderboard: dict[str, dict[str, Any]] = {}
    searches: dict[str, GridSearchCV] = {}
    for family in settings.families:
        pipeline = build(family, settings.alpha, settings.seed)
        grid = param_grid(family, settings.grids.get(family, {}), pipeline)
        search = GridSearchCV(
            pipeline, grid or [{}], scoring=_SCORING, refit="rmse", cv=folds, n_jobs=-1
        )
        search.fit(X, y)
        searches[family] = search
        leaderboard[family] = _summary(search)

    chosen = settings.family
    if chosen == "auto":
        chosen = min(leaderboard, key=lambda name: (leaderboard[name]["cv_rmse_mean"], name))
    report = {
        "best": {
            "family": chosen,
            "selected_by": "lowest cv_rmse_mean" if settings.family == "auto" else "model.family",
            **{
                key: leaderboard[chosen][key]
                for key in ("cv_rmse_mean", "cv_rmse_std", "best_params")
            },
        },
        "cv": {"folds": settings.folds, "repeats": settings.repeats, "train_rows": len(train)},
        "features": features,
        "families": leaderboard,
    }
    return report, searches[chosen].best_estimator_


def _summary(search: GridSearchCV) -> dict[str, Any]:
    results, best = search.cv_results_, search.best_index_

    def figure(name: str, stat: str) -> float:
        value = float(results[f"{stat}_test_{name}"][best])
        # sklearn maximises, so the means of error scores come negated
        return round(-value if name != "r2" and stat == "mean" else value, _DIGITS)

    return {
        "cv_rmse_mean": figure("rmse", "mean"),
        "cv_rmse_std": figure("rmse", "std"),
        "cv_mae_mean": figure("mae", "mean"),
        "cv_r2_mean": figure("r2", "mean"),
        "best_params": {
            key.removeprefix("model__").replace("splines__n_knots", "spline_knots"): _plain(value)
            for key, value in sorted(search.best_params_.items())
        },
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("tune")

    try:
        settings = TuneSettings.from_params(params)
        features = model_features(params["features"]["drop"])
        report, model = tune(read_table(args.train), features, settings)
    except ValueError as error:
        sys.exit(f"tune: {error}")
    args.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.model)
    write_json(args.report, report)


if __name__ == "__main__":
    main()
