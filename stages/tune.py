"""Tune: search every model family on the same repeated K-fold splits of the training split.

`tune.search` picks the search (an exhaustive grid, or Optuna's TPE sampler with pruning). The
leaderboard goes to metrics/tune.json with, when `tune.nested` is on, an unbiased figure: the whole
selection re-run inside outer folds. The chosen family's Pipeline, refitted on the whole training
split, goes to the intermediate model file; every candidate tried goes to a trials table and the
best-so-far RMSE per family to the optimisation history plot.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from joblib import Parallel
from sklearn.metrics import root_mean_squared_error
from sklearn.model_selection import KFold, RepeatedKFold
from sklearn.pipeline import Pipeline

from stages.contract import TARGET, model_features
from stages.families import FAMILIES, MONOTONE, build, fitted_trees, param_grid
from stages.files import load_params, read_table, write_json
from stages.search import (
    FamilyResult,
    Pruning,
    Split,
    grid_search,
    optuna_search,
    parse_space,
)

_DIGITS = 6  # rounding keeps metrics files stable against last-bit noise
SEARCHES = ("grid", "optuna")


@dataclass(frozen=True)
class TuneSettings:
    families: list[str]
    grids: dict[str, dict[str, list[Any]]]
    folds: int
    repeats: int
    family: str  # "auto" or one of `families`
    alpha: float
    seed: int
    search: str
    spaces: dict[str, dict[str, Any]]
    trials: int
    pruning: Pruning
    nested: bool
    outer_folds: int
    inner_folds: int
    n_iter_no_change: int | None
    validation_fraction: float
    monotone: dict[str, int]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TuneSettings:
        tune, model = params["tune"], params["model"]
        optuna, stopping = tune["optuna"], tune["early_stopping"]
        settings = cls(
            families=list(tune["families"]),
            grids=dict(tune["grids"]),
            folds=tune["cv"]["folds"],
            repeats=tune["cv"]["repeats"],
            family=model["family"],
            alpha=model["alpha"],
            seed=params["seed"],
            search=tune["search"],
            spaces=dict(optuna["spaces"]),
            trials=optuna["trials"],
            pruning=Pruning(**optuna["pruning"]),
            nested=tune["nested"],
            outer_folds=tune["nested_cv"]["outer_folds"],
            inner_folds=tune["nested_cv"]["inner_folds"],
            n_iter_no_change=stopping["n_iter_no_change"],
            validation_fraction=stopping["validation_fraction"],
            monotone=dict(tune["monotone"] or {}),
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
        if self.search not in SEARCHES:
            raise ValueError(f"tune.search must be one of {list(SEARCHES)}, got {self.search!r}")
        if not isinstance(self.nested, bool):
            raise ValueError(f"tune.nested must be true or false, got {self.nested!r}")
        for key, value, least in (
            ("cv.folds", self.folds, 2),
            ("cv.repeats", self.repeats, 1),
            ("optuna.trials", self.trials, 1),
            ("optuna.pruning.min_folds", self.pruning.min_folds, 1),
            ("optuna.pruning.reduction_factor", self.pruning.reduction_factor, 2),
            ("nested_cv.outer_folds", self.outer_folds, 2),
            ("nested_cv.inner_folds", self.inner_folds, 2),
        ):
            _whole(f"tune.{key}", value, least)
        if self.n_iter_no_change is not None:
            _whole("tune.early_stopping.n_iter_no_change", self.n_iter_no_change, 1)
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, float) or not 0 < fraction < 1:
            raise ValueError(
                "tune.early_stopping.validation_fraction must lie between 0 and 1, "
                f"got {fraction!r}"
            )
        incapable = [name for name in self.families if name not in MONOTONE]
        if self.monotone and self.family in incapable:
            raise ValueError(
                f"model.family {self.family!r} cannot honour tune.monotone; "
                f"only {list(MONOTONE)} can (or clear tune.monotone)"
            )
        if self.monotone and len(incapable) == len(self.families):
            raise ValueError(
                f"tune.monotone is set but none of tune.families can honour it; add one of "
                f"{list(MONOTONE)}"
            )

    def constraints(self, features: list[str]) -> list[int] | None:
        """tune.monotone as sklearn's monotonic_cst (one entry per model input), None if empty."""
        if not self.monotone:
            return None
        for name, sign in self.monotone.items():
            if name not in features:
                raise ValueError(
                    f"tune.monotone.{name} is not a model input; choose from {features}"
                )
            if isinstance(sign, bool) or sign not in (-1, 0, 1):
                raise ValueError(f"tune.monotone.{name} must be -1, 0 or 1, got {sign!r}")
        return [int(self.monotone.get(name, 0)) for name in features]

    def searched(self) -> list[str]:
        """The families searched: with tune.monotone, only those that can honour it."""
        return [name for name in self.families if not self.monotone or name in MONOTONE]


def _whole(key: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key} must be a whole number >= {least}, got {value!r}")


@dataclass(frozen=True)
class Selection:
    chosen: str
    results: dict[str, FamilyResult]


def select(
    X: np.ndarray,
    y: np.ndarray,
    splits: list[Split],
    settings: TuneSettings,
    constraints: list[int] | None,
    parallel: Parallel,
) -> Selection:
    """The whole selection: search each family on `splits`, then pick the family."""
    results: dict[str, FamilyResult] = {}
    for family in settings.searched():
        pipeline = build(
            family,
            settings.alpha,
            settings.seed,
            n_iter_no_change=settings.n_iter_no_change,
            validation_fraction=settings.validation_fraction,
            monotonic_cst=constraints if family in MONOTONE else None,
        )
        if settings.search == "grid":
            grid = param_grid(family, settings.grids.get(family, {}), pipeline)
            results[family] = grid_search(family, pipeline, grid, X, y, splits, parallel)
        else:
            space = parse_space(family, settings.spaces.get(family, {}), pipeline)
            results[family] = optuna_search(
                family,
                pipeline,
                space,
                X,
                y,
                splits,
                parallel,
                trials=settings.trials,
                pruning=settings.pruning,
                seed=settings.seed,
            )
    chosen = settings.family
    if chosen == "auto":
        chosen = min(results, key=lambda name: (results[name].figures["cv_rmse_mean"], name))
    return Selection(chosen, results)


def nested_cv(
    X: np.ndarray,
    y: np.ndarray,
    settings: TuneSettings,
    constraints: list[int] | None,
    parallel: Parallel,
) -> dict[str, Any]:
    """Re-run the whole selection (every search and the family choice) on each outer training
    part and score its pick on the outer test part, which no decision has seen."""
    outer = KFold(n_splits=settings.outer_folds, shuffle=True, random_state=settings.seed)
    inner = KFold(n_splits=settings.inner_folds, shuffle=True, random_state=settings.seed)
    rmse: list[float] = []
    chosen: list[str] = []
    for train, test in outer.split(X):
        selection = select(
            X[train], y[train], list(inner.split(train)), settings, constraints, parallel
        )
        model = selection.results[selection.chosen].estimator
        rmse.append(float(root_mean_squared_error(y[test], model.predict(X[test]))))
        chosen.append(selection.chosen)
    return {
        "outer_folds": settings.outer_folds,
        "inner_folds": settings.inner_folds,
        "fold_rmse": [round(value, _DIGITS) for value in rmse],
        "chosen_families": chosen,
        "rmse_mean": round(float(np.mean(rmse)), _DIGITS),
        "rmse_std": round(float(np.std(rmse)), _DIGITS),
    }


@dataclass(frozen=True)
class TuneResult:
    report: dict[str, Any]
    model: Pipeline
    trials: pd.DataFrame


def tune(train: pd.DataFrame, features: list[str], settings: TuneSettings) -> TuneResult:
    """Search every family on the same folds; return the report, the chosen Pipeline, the trials."""
    if len(train) < settings.folds:
        raise ValueError(
            f"tune.cv.folds is {settings.folds} but the training split has {len(train)} rows"
        )
    if settings.nested and len(train) < settings.outer_folds * settings.inner_folds:
        raise ValueError(
            f"tune.nested_cv needs at least outer_folds x inner_folds rows "
            f"({settings.outer_folds * settings.inner_folds}), the training split has {len(train)}"
        )
    constraints = settings.constraints(features)
    X = train[features].to_numpy(dtype=np.float64)
    y = train[TARGET.name].to_numpy(dtype=np.float64)
    folds = RepeatedKFold(
        n_splits=settings.folds, n_repeats=settings.repeats, random_state=settings.seed
    )
    with Parallel(n_jobs=-1) as parallel:
        selection = select(X, y, list(folds.split(X)), settings, constraints, parallel)
        nested = nested_cv(X, y, settings, constraints, parallel) if settings.nested else None

    families = {name: _summary(result) for name, result in selection.results.items()}
    chosen = selection.chosen
    best: dict[str, Any] = {
        "family": chosen,
        "selected_by": "lowest cv_rmse_mean" if settings.family == "auto" else "model.family",
        **{
            key: families[chosen][key]
            for key in ("cv_rmse_mean", "cv_rmse_std", "best_params", "trees")
        },
    }
    if nested is not None:
        best["nested_cv_rmse_mean"] = nested["rmse_mean"]
        best["nested_cv_rmse_std"] = nested["rmse_std"]
    report: dict[str, Any] = {
        "search": settings.search,
        "best": best,
        "cv": {"folds": settings.folds, "repeats": settings.repeats, "train_rows": len(train)},
        "features": features,
        "monotone": settings.monotone,
        "skipped": {
            name: "cannot honour tune.monotone"
            for name in settings.families
            if name not in settings.searched()
        },
        "families": families,
    }
    if nested is not None:
        report["nested"] = nested
    trials = pd.DataFrame([row for result in selection.results.values() for row in result.trials])
    return TuneResult(report, selection.results[chosen].estimator, trials)


def _summary(result: FamilyResult) -> dict[str, Any]:
    states = [row["state"] for row in result.trials]
    return {
        **{key: round(value, _DIGITS) for key, value in result.figures.items()},
        "best_params": result.best_params,
        "trees": fitted_trees(result.estimator),
        "candidates": len(states),
        "pruned": states.count("pruned"),
    }


def history(trials: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """Best cross-validated RMSE so far after each candidate, one column per family in
    `families` (a family that tried fewer candidates keeps its final best; a skipped one is
    empty), for the optimisation history plot."""
    scored = trials.assign(
        rmse=trials.cv_rmse_mean.where(trials.state != "pruned", math.inf).round(_DIGITS)
    )
    best = scored.pivot(index="trial", columns="family", values="rmse").cummin().ffill()
    return best.reindex(columns=families).rename_axis(columns=None).reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--trials", type=Path, required=True)
    parser.add_argument("--history", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("tune")

    try:
        settings = TuneSettings.from_params(params)
        features = model_features(params["features"]["drop"])
        result = tune(read_table(args.train), features, settings)
    except ValueError as error:
        sys.exit(f"tune: {error}")
    args.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(result.model, args.model)
    write_json(args.report, result.report)
    tables = (
        (result.trials.round({"cv_rmse_mean": _DIGITS}), args.trials),
        (history(result.trials, settings.families), args.history),
    )
    for frame, path in tables:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
