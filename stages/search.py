"""How tune searches one family: every combination of a grid, or Optuna's TPE sampler with pruning.

Both score a candidate with `cross_score` on the same folds, so their figures compare. Results never
depend on the number of cores: folds run in parallel, but Optuna sees their scores in fold order,
so a pruning decision (and so the next sample) is the same on any machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from joblib import Parallel, delayed, effective_n_jobs
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline

from stages.families import pipeline_key, search_key

Split = tuple[np.ndarray, np.ndarray]
FoldScore = tuple[float, float, float]  # rmse, mae, r2 on one test fold

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Pruning:
    """Successive halving over folds: at `min_folds`, then at each `reduction_factor` times as
    many, a trial goes on only if its running mean RMSE is in the best 1/`reduction_factor` of
    the trials that reached that many folds."""

    min_folds: int
    reduction_factor: int


@dataclass(frozen=True)
class Space:
    """A family's Optuna search space: fixed Pipeline parameters, and sampled ones."""

    fixed: dict[str, Any]
    sampled: dict[str, BaseDistribution]

    def size(self) -> float:
        """How many distinct candidates there are (inf once any range is continuous)."""
        total = 1.0
        for distribution in self.sampled.values():
            if isinstance(distribution, CategoricalDistribution):
                total *= len(distribution.choices)
            elif isinstance(distribution, IntDistribution):
                total *= (distribution.high - distribution.low) // distribution.step + 1
            else:
                return math.inf
        return total


@dataclass(frozen=True)
class FamilyResult:
    figures: dict[str, float]  # cv_rmse_mean, cv_rmse_std, cv_mae_mean, cv_r2_mean
    best_params: dict[str, Any]  # params.yaml names
    estimator: Pipeline  # the best candidate refitted on every row
    trials: list[dict[str, Any]]  # one row per candidate: the study (or the grid) as a table


def parse_space(family: str, spec: dict[str, Any], pipeline: Pipeline) -> Space:
    """Read tune.optuna.spaces.<family>: per key a value (fixed), a list (choices) or
    {low, high, log} (an int range if both bounds are whole numbers, else a float range)."""
    fixed: dict[str, Any] = {}
    sampled: dict[str, BaseDistribution] = {}
    for key, value in spec.items():
        where = f"tune.optuna.spaces.{family}.{key}"
        name = pipeline_key(family, key, pipeline, where)
        if isinstance(value, list):
            if not value:
                raise ValueError(f"{where}: a list of choices must not be empty")
            sampled[name] = CategoricalDistribution(value)
        elif isinstance(value, dict):
            sampled[name] = _range(value, where)
        else:
            fixed[name] = value
    return Space(fixed, sampled)


def _range(spec: dict[str, Any], where: str) -> BaseDistribution:
    unknown = set(spec) - {"low", "high", "log"}
    if unknown or not {"low", "high"} <= set(spec):
        raise ValueError(
            f"{where} must be a value, a list of choices or {{low, high, log}}, got {spec!r}"
        )
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for bound, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{bound} must be a number, got {value!r}")
    if not low < high:
        raise ValueError(f"{where}: low ({low}) must be below high ({high})")
    if not isinstance(log, bool):
        raise ValueError(f"{where}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ValueError(f"{where}: a log scale needs low above 0, got {low}")
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _fit_score(pipeline: Pipeline, X: np.ndarray, y: np.ndarray, split: Split) -> FoldScore:
    train, test = split
    predicted = clone(pipeline).fit(X[train], y[train]).predict(X[test])
    return (
        float(root_mean_squared_error(y[test], predicted)),
        float(mean_absolute_error(y[test], predicted)),
        float(r2_score(y[test], predicted)),
    )


def cross_score(
    pipeline: Pipeline,
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[Split],
    parallel: Parallel,
    stop: Callable[[int, float], bool] | None = None,
) -> list[FoldScore]:
    """Score `pipeline` fold by fold. `stop(folds_done, running_mean_rmse)` is asked after each
    fold, in fold order; once it says True the rest are not fitted."""
    batch = len(splits) if stop is None else effective_n_jobs(parallel.n_jobs)
    scores: list[FoldScore] = []
    for start in range(0, len(splits), batch):
        chunk = splits[start : start + batch]
        for score in parallel(delayed(_fit_score)(pipeline, X, y, split) for split in chunk):
            scores.append(score)
            if stop is not None and stop(len(scores), float(np.mean([s[0] for s in scores]))):
                return scores
    return scores


def figures(scores: list[FoldScore]) -> dict[str, float]:
    rmse, mae, r2 = (np.array(column) for column in zip(*scores, strict=True))
    return {
        "cv_rmse_mean": float(rmse.mean()),
        "cv_rmse_std": float(rmse.std()),
        "cv_mae_mean": float(mae.mean()),
        "cv_r2_mean": float(r2.mean()),
    }


def grid_search(
    family: str,
    pipeline: Pipeline,
    grid: dict[str, list[Any]],
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[Split],
    parallel: Parallel,
) -> FamilyResult:
    """Every combination of `grid` (Pipeline parameter names); a tie goes to the first, as in
    sklearn's GridSearchCV."""
    candidates = list(ParameterGrid(grid))
    scored = [
        figures(cross_score(clone(pipeline).set_params(**c), X, y, splits, parallel))
        for c in candidates
    ]
    trials = [
        _trial_row(family, number, "complete", len(splits), result["cv_rmse_mean"], candidate)
        for number, (candidate, result) in enumerate(zip(candidates, scored, strict=True))
    ]
    best = min(range(len(candidates)), key=lambda i: (scored[i]["cv_rmse_mean"], i))
    return _result(pipeline, candidates[best], scored[best], trials, X, y)


def optuna_search(
    family: str,
    pipeline: Pipeline,
    space: Space,
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[Split],
    parallel: Parallel,
    *,
    trials: int,
    pruning: Pruning,
    seed: int,
) -> FamilyResult:
    """`trials` samples of `space` (fewer when the space has fewer distinct candidates) by a seeded
    TPE sampler; a candidate sampled twice reuses its first score instead of fitting again."""
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruning.min_folds, reduction_factor=pruning.reduction_factor
        ),
    )
    base = clone(pipeline).set_params(**space.fixed)
    seen: dict[str, tuple[TrialState, list[FoldScore]]] = {}
    complete: dict[int, tuple[dict[str, Any], dict[str, float]]] = {}
    rows: list[dict[str, Any]] = []
    for number in range(int(min(trials, space.size()))):
        trial = study.ask(space.sampled)
        key = json.dumps(trial.params, sort_keys=True)
        repeat = key in seen
        if not repeat:

            def stop(done: int, running: float, trial: optuna.Trial = trial) -> bool:
                trial.report(running, step=done)
                return done < len(splits) and trial.should_prune()

            candidate = clone(base).set_params(**trial.params)
            scores = cross_score(candidate, X, y, splits, parallel, stop)
            state = TrialState.COMPLETE if len(scores) == len(splits) else TrialState.PRUNED
            seen[key] = (state, scores)
        state, scores = seen[key]
        running = float(np.mean([s[0] for s in scores]))
        if state == TrialState.COMPLETE:
            study.tell(trial, running)
            complete[number] = (trial.params, figures(scores))
        else:
            study.tell(trial, state=TrialState.PRUNED)
        label = "repeat" if repeat else state.name.lower()
        rows.append(_trial_row(family, number, label, len(scores), running, trial.params))
    best = min(complete, key=lambda n: (complete[n][1]["cv_rmse_mean"], n))
    params, result = complete[best]
    return _result(pipeline, {**space.fixed, **params}, result, rows, X, y)


def _trial_row(
    family: str, number: int, state: str, folds: int, rmse: float, params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "family": family,
        "trial": number,
        "state": state,
        "folds": folds,
        "cv_rmse_mean": rmse,
        "params": json.dumps({search_key(k): _plain(v) for k, v in sorted(params.items())}),
    }


def _result(
    pipeline: Pipeline,
    params: dict[str, Any],
    result: dict[str, float],
    trials: list[dict[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
) -> FamilyResult:
    return FamilyResult(
        figures=result,
        best_params={search_key(k): _plain(v) for k, v in sorted(params.items())},
        estimator=clone(pipeline).set_params(**params).fit(X, y),
        trials=trials,
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
