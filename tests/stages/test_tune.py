from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from stages.contract import model_features
from stages.families import FAMILIES, build, param_grid
from stages.tune import TuneSettings, tune

FEATURES = model_features(["B"])


def settings(**overrides: Any) -> TuneSettings:
    base: dict[str, Any] = {
        "families": ["ridge", "random_forest"],
        "grids": {"ridge": {"spline_knots": [3, 4]}, "random_forest": {"n_estimators": [10]}},
        "folds": 3,
        "repeats": 1,
        "family": "auto",
        "alpha": 1.0,
        "seed": 0,
    }
    result = TuneSettings(**{**base, **overrides})
    result.check()
    return result


def test_leaderboard_has_every_family_and_the_required_figures(tiny_table: pd.DataFrame) -> None:
    report, model = tune(tiny_table, FEATURES, settings())
    assert set(report["families"]) == {"ridge", "random_forest"}
    for entry in report["families"].values():
        assert set(entry) == {
            "cv_rmse_mean",
            "cv_rmse_std",
            "cv_mae_mean",
            "cv_r2_mean",
            "best_params",
        }
        assert entry["cv_rmse_mean"] > 0 and entry["cv_mae_mean"] > 0
    best = report["best"]
    assert best["cv_rmse_mean"] == min(e["cv_rmse_mean"] for e in report["families"].values())
    assert report["families"]["ridge"]["best_params"]["spline_knots"] in (3, 4)
    assert report["cv"] == {"folds": 3, "repeats": 1, "train_rows": 60}
    # the chosen Pipeline is fitted on the whole training split and takes raw columns
    assert model.predict(tiny_table[FEATURES].to_numpy()[:2]).shape == (2,)


def test_the_synthetic_signal_is_learned(tiny_table: pd.DataFrame) -> None:
    report, _ = tune(tiny_table, FEATURES, settings(families=["ridge"]))
    assert report["families"]["ridge"]["cv_r2_mean"] > 0.5


def test_a_forced_family_is_exported_even_when_not_best(tiny_table: pd.DataFrame) -> None:
    report, model = tune(tiny_table, FEATURES, settings(family="random_forest"))
    assert report["best"]["family"] == "random_forest"
    assert report["best"]["selected_by"] == "model.family"
    assert type(model.named_steps["model"]).__name__ == "RandomForestRegressor"


def test_alpha_reaches_the_linear_families_only(tiny_table: pd.DataFrame) -> None:
    _, model = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=0.25))
    assert model.named_steps["model"].alpha == 0.25
    first, _ = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=0.01))
    second, _ = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=3.0))
    assert first["families"]["lasso"]["cv_rmse_mean"] != second["families"]["lasso"]["cv_rmse_mean"]


def test_results_are_deterministic(tiny_table: pd.DataFrame) -> None:
    assert tune(tiny_table, FEATURES, settings())[0] == tune(tiny_table, FEATURES, settings())[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"families": ["xgboost"]}, "tune.families must list known families"),
        ({"families": []}, "tune.families must list known families"),
        ({"family": "lasso"}, "model.family 'lasso' must be 'auto' or one of tune.families"),
        ({"alpha": "strong"}, "model.alpha must be a number"),
        ({"alpha": 0}, "model.alpha must be greater than 0"),
        ({"folds": 1}, "tune.cv.folds must be a whole number >= 2"),
        ({"repeats": 0}, "tune.cv.repeats must be a whole number >= 1"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_too_many_folds_for_the_data_is_named(tiny_table: pd.DataFrame) -> None:
    with pytest.raises(
        ValueError, match=r"tune.cv.folds is 100 but the training split has 60 rows"
    ):
        tune(tiny_table, FEATURES, settings(folds=100))


@pytest.mark.parametrize(
    ("family", "grid", "message"),
    [
        ("ridge", {"alpha": [1.0]}, "tune.grids.ridge.alpha: .* take alpha from model.alpha"),
        (
            "random_forest",
            {"max_dept": [3]},
            "max_dept is not a parameter of RandomForestRegressor",
        ),
        ("gradient_boosting", {"max_depth": 3}, "max_depth must be a non-empty list"),
    ],
)
def test_bad_grids_are_named(family: str, grid: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        param_grid(family, grid, build(family, alpha=1.0, seed=0))


def test_every_family_builds_and_fits_data_with_gaps(tiny_table: pd.DataFrame) -> None:
    gappy = tiny_table.copy()
    gappy.loc[::5, "LSTAT"] = float("nan")
    for family in FAMILIES:
        pipeline = build(family, alpha=1.0, seed=0)
        pipeline.fit(gappy[FEATURES].to_numpy(), gappy["MEDV"].to_numpy())
        assert pipeline.predict(gappy[FEATURES].to_numpy()[:3]).shape == (3,)
