"""The model families tune can search: each is one sklearn Pipeline from raw columns to MEDV.

Every transform (imputation, spline features, scaling) sits inside the Pipeline, so the search fits
it on training folds only and the fitted object is exactly what is evaluated and served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.base import RegressorMixin
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

# Linear families share model.alpha; their searches tune the spline basis and family extras.
LINEAR: dict[str, type[RegressorMixin]] = {"ridge": Ridge, "lasso": Lasso, "elasticnet": ElasticNet}
TREES: dict[str, type[RegressorMixin]] = {
    "random_forest": RandomForestRegressor,
    "gradient_boosting": GradientBoostingRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}
FAMILIES: tuple[str, ...] = (*LINEAR, *TREES)
# The families whose estimator takes `monotonic_cst` (sklearn's GradientBoostingRegressor does not).
MONOTONE: tuple[str, ...] = ("random_forest", "hist_gradient_boosting")
_SPLINE_KNOTS = "spline_knots"  # the one search key that is not the estimator's own parameter


def build(
    family: str,
    alpha: float,
    seed: int,
    *,
    n_iter_no_change: int | None = None,
    validation_fraction: float | None = None,
    monotonic_cst: Sequence[int] | None = None,
) -> Pipeline:
    """An unfitted Pipeline for `family`.

    `alpha` applies to the linear families only. With `n_iter_no_change`, the boosting families
    hold out `validation_fraction` of the rows they are fitted on and stop adding trees once that
    many in a row fail to improve it (both come from tune.early_stopping). `monotonic_cst` (one of
    -1, 0, +1 per input) is honoured by the MONOTONE families and refused by the others.
    """
    if monotonic_cst is not None and family not in MONOTONE:
        raise ValueError(f"{family} cannot honour monotonic constraints; only {list(MONOTONE)} can")
    if n_iter_no_change is not None and validation_fraction is None:
        raise ValueError("early stopping (n_iter_no_change) needs a validation_fraction")
    constraints = {} if monotonic_cst is None else {"monotonic_cst": list(monotonic_cst)}
    if family in LINEAR:
        extra: dict[str, Any] = {} if family == "ridge" else {"max_iter": 50_000}
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("splines", SplineTransformer(n_knots=5, degree=3)),
                ("scale", StandardScaler()),
                ("model", LINEAR[family](alpha=alpha, random_state=seed, **extra)),
            ]
        )
    stopping: dict[str, Any] = {}
    if n_iter_no_change is not None:
        stopping = {
            "n_iter_no_change": n_iter_no_change,
            "validation_fraction": validation_fraction,
        }
    if family == "hist_gradient_boosting":
        # Histogram boosting routes gaps natively, which beats imputing them. Its early stopping
        # is explicit here: sklearn's "auto" would switch it on by row count alone.
        early = {"early_stopping": n_iter_no_change is not None, **stopping}
        model = HistGradientBoostingRegressor(random_state=seed, **early, **constraints)
        return Pipeline([("model", model)])
    if family == "gradient_boosting":
        model = GradientBoostingRegressor(random_state=seed, **stopping)
    elif family in TREES:
        model = TREES[family](random_state=seed, **constraints)
    else:
        raise ValueError(f"unknown model family {family!r}; choose from {list(FAMILIES)}")
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", model)])


def fitted_trees(pipeline: Pipeline) -> int | None:
    """The trees a fitted Pipeline holds (after early stopping), or None for a linear family."""
    model = pipeline.named_steps["model"]
    if isinstance(model, GradientBoostingRegressor):
        return int(model.n_estimators_)
    if isinstance(model, HistGradientBoostingRegressor):
        return int(model.n_iter_)
    if isinstance(model, RandomForestRegressor):
        return len(model.estimators_)
    return None


def pipeline_key(family: str, key: str, pipeline: Pipeline, where: str) -> str:
    """The Pipeline parameter behind a params.yaml search key (`where` names it in errors)."""
    model = pipeline.named_steps["model"]
    if family in LINEAR and key == "alpha":
        raise ValueError(f"{where}: the linear families take alpha from model.alpha alone")
    if family in LINEAR and key == _SPLINE_KNOTS:
        return "splines__n_knots"
    if key in model.get_params():
        return f"model__{key}"
    raise ValueError(f"{where} is not a parameter of {type(model).__name__}")


def search_key(pipeline_parameter: str) -> str:
    """The inverse of pipeline_key: the name params.yaml and the reports use."""
    return pipeline_parameter.removeprefix("model__").replace("splines__n_knots", _SPLINE_KNOTS)


def param_grid(family: str, grid: dict[str, list[Any]], pipeline: Pipeline) -> dict[str, list[Any]]:
    """Translate a params.yaml grid (estimator parameter names) into Pipeline parameter names."""
    translated: dict[str, list[Any]] = {}
    for key, values in grid.items():
        where = f"tune.grids.{family}.{key}"
        name = pipeline_key(family, key, pipeline, where)
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where} must be a non-empty list of values, got {values!r}")
        translated[name] = values
    return translated
