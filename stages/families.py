"""The model families tune can search: each is one sklearn Pipeline from raw columns to MEDV.

Every transform (imputation, spline features, scaling) sits inside the Pipeline, so GridSearchCV
fits it on training folds only and the fitted object is exactly what is evaluated and served.
"""

from __future__ import annotations

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

# Linear families share model.alpha; their grids tune the spline basis and family extras.
LINEAR: dict[str, type[RegressorMixin]] = {"ridge": Ridge, "lasso": Lasso, "elasticnet": ElasticNet}
TREES: dict[str, type[RegressorMixin]] = {
    "random_forest": RandomForestRegressor,
    "gradient_boosting": GradientBoostingRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}
FAMILIES: tuple[str, ...] = (*LINEAR, *TREES)
_SPLINE_KNOTS = "spline_knots"  # the one grid key that is not the estimator's own parameter


def build(family: str, alpha: float, seed: int) -> Pipeline:
    """An unfitted Pipeline for `family`; `alpha` applies to the linear families only."""
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
    if family == "hist_gradient_boosting":
        # Histogram boosting routes gaps natively, which beats imputing them.
        return Pipeline([("model", HistGradientBoostingRegressor(random_state=seed))])
    if family in TREES:
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("model", TREES[family](random_state=seed)),
            ]
        )
    raise ValueError(f"unknown model family {family!r}; choose from {list(FAMILIES)}")


def param_grid(family: str, grid: dict[str, list[Any]], pipeline: Pipeline) -> dict[str, list[Any]]:
    """Translate a params.yaml grid (estimator parameter names) into Pipeline parameter names."""
    model = pipeline.named_steps["model"]
    valid = model.get_params()
    translated: dict[str, list[Any]] = {}
    for key, values in grid.items():
        where = f"tune.grids.{family}.{key}"
        if family in LINEAR and key == "alpha":
            raise ValueError(f"{where}: the linear families take alpha from model.alpha alone")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where} must be a non-empty list of values, got {values!r}")
        if family in LINEAR and key == _SPLINE_KNOTS:
            translated["splines__n_knots"] = values
        elif key in valid:
            translated[f"model__{key}"] = values
        else:
            raise ValueError(f"{where} is not a parameter of {type(model).__name__}")
    return translated
