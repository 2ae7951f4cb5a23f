from __future__ import annotations

import dataclasses
import io
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, RepeatedKFold

from stages import tune as tune_module
from stages.contract import model_features
from stages.families import build, fitted_trees, param_grid
from stages.search import Pruning
from stages.tune import TuneSettings, history, tune
from tests.conftest import RAW_DATA

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
        "search": "grid",
        "spaces": {},
        "trials": 8,
        "pruning": Pruning(min_folds=3, reduction_factor=3),
        "nested": False,
        "outer_folds": 5,
        "inner_folds": 5,
        "n_iter_no_change": None,
        "validation_fraction": 0.1,
        "monotone": {},
    }
    result = TuneSettings(**{**base, **overrides})
    result.check()
    return result


def optuna_settings(**overrides: Any) -> TuneSettings:
    spaces = {
        "ridge": {"spline_knots": {"low": 3, "high": 6}},
        "gradient_boosting": {
            "n_estimators": 40,
            "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
            "max_depth": {"low": 1, "high": 4},
        },
    }
    base: dict[str, Any] = {
        "search": "optuna",
        "families": ["ridge", "gradient_boosting"],
        "spaces": spaces,
        "folds": 4,
        "repeats": 2,
    }
    return settings(**{**base, **overrides})


def test_leaderboard_has_every_family_and_the_required_figures(tiny_table: pd.DataFrame) -> None:
    result = tune(tiny_table, FEATURES, settings())
    report = result.report
    assert set(report["families"]) == {"ridge", "random_forest"}
    for entry in report["families"].values():
        assert set(entry) == {
            "cv_rmse_mean",
            "cv_rmse_std",
            "cv_mae_mean",
            "cv_r2_mean",
            "best_params",
            "trees",
            "candidates",
            "pruned",
        }
        assert entry["cv_rmse_mean"] > 0 and entry["cv_mae_mean"] > 0
    best = report["best"]
    assert best["cv_rmse_mean"] == min(e["cv_rmse_mean"] for e in report["families"].values())
    assert report["families"]["ridge"]["best_params"]["spline_knots"] in (3, 4)
    assert report["families"]["ridge"]["candidates"] == 2
    assert report["families"]["ridge"]["trees"] is None
    assert report["families"]["random_forest"]["trees"] == 10
    assert report["cv"] == {"folds": 3, "repeats": 1, "train_rows": 60}
    assert report["search"] == "grid"
    assert "nested" not in report and "nested_cv_rmse_mean" not in best
    # the chosen Pipeline is fitted on the whole training split and takes raw columns
    assert result.model.predict(tiny_table[FEATURES].to_numpy()[:2]).shape == (2,)
    # every candidate is in the trials table, under its params.yaml names
    assert len(result.trials) == 3
    assert set(result.trials.state) == {"complete"}
    assert '"spline_knots": 3' in result.trials.params.iloc[0]


def test_the_grid_scores_exactly_as_sklearns_grid_search(tiny_table: pd.DataFrame) -> None:
    report = tune(tiny_table, FEATURES, settings(families=["ridge"])).report
    pipeline = build("ridge", alpha=1.0, seed=0)
    folds = RepeatedKFold(n_splits=3, n_repeats=1, random_state=0)
    reference = GridSearchCV(
        pipeline, {"splines__n_knots": [3, 4]}, scoring="neg_root_mean_squared_error", cv=folds
    ).fit(tiny_table[FEATURES].to_numpy(), tiny_table["MEDV"].to_numpy())
    assert report["families"]["ridge"]["cv_rmse_mean"] == pytest.approx(
        -reference.best_score_, abs=1e-6
    )
    assert (
        report["families"]["ridge"]["best_params"]["spline_knots"]
        == (reference.best_params_["splines__n_knots"])
    )


def test_the_synthetic_signal_is_learned(tiny_table: pd.DataFrame) -> None:
    report = tune(tiny_table, FEATURES, settings(families=["ridge"])).report
    assert report["families"]["ridge"]["cv_r2_mean"] > 0.5


def test_a_forced_family_is_exported_even_when_not_best(tiny_table: pd.DataFrame) -> None:
    result = tune(tiny_table, FEATURES, settings(family="random_forest"))
    assert result.report["best"]["family"] == "random_forest"
    assert result.report["best"]["selected_by"] == "model.family"
    assert type(result.model.named_steps["model"]).__name__ == "RandomForestRegressor"


def test_alpha_reaches_the_linear_families_only(tiny_table: pd.DataFrame) -> None:
    model = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=0.25)).model
    assert model.named_steps["model"].alpha == 0.25
    first = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=0.01)).report
    second = tune(tiny_table, FEATURES, settings(families=["lasso"], alpha=3.0)).report
    assert first["families"]["lasso"]["cv_rmse_mean"] != second["families"]["lasso"]["cv_rmse_mean"]


def _model_bytes(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("make", [settings, optuna_settings], ids=["grid", "optuna"])
def test_two_runs_give_identical_results(tiny_table: pd.DataFrame, make: Any) -> None:
    first, second = (tune(tiny_table, FEATURES, make()) for _ in range(2))
    assert first.report == second.report
    pd.testing.assert_frame_equal(first.trials, second.trials)
    assert _model_bytes(first.model) == _model_bytes(second.model)


def test_optuna_samples_the_space_and_prunes_losers_on_their_first_folds(
    tiny_table: pd.DataFrame,
) -> None:
    result = tune(tiny_table, FEATURES, optuna_settings(trials=12))
    boosted = result.trials[result.trials.family == "gradient_boosting"]
    assert len(boosted) == 12
    pruned = boosted[boosted.state == "pruned"]
    assert len(pruned) > 0
    # successive halving over the 8 folds: a pruned candidate stopped at its 3rd fold (the first
    # rung), never after all of them
    assert set(pruned.folds) == {3}
    assert set(boosted[boosted.state == "complete"].folds) == {8}
    entry = result.report["families"]["gradient_boosting"]
    assert entry["pruned"] == len(pruned) and entry["candidates"] == 12
    params = entry["best_params"]
    assert params["n_estimators"] == 40  # a fixed value stays fixed
    assert 0.02 <= params["learning_rate"] <= 0.3 and params["max_depth"] in range(1, 5)
    # the best is the lowest complete candidate, pruned ones never win
    complete = boosted[boosted.state == "complete"]
    assert entry["cv_rmse_mean"] == pytest.approx(complete.cv_rmse_mean.min(), abs=1e-6)


def test_a_small_space_is_tried_once_per_point(tiny_table: pd.DataFrame) -> None:
    # spline_knots 3..6 has four points: four candidates, not eight, each fitted once at most
    trials = tune(tiny_table, FEATURES, optuna_settings(families=["ridge"])).trials
    assert len(trials) == 4
    fitted = trials[trials.state != "repeat"]
    assert fitted.params.is_unique


def test_optuna_and_the_grid_score_the_same_candidate_alike(tiny_table: pd.DataFrame) -> None:
    grid = settings(families=["ridge"], grids={"ridge": {"spline_knots": [4]}}, repeats=2)
    sampled = optuna_settings(families=["ridge"], spaces={"ridge": {"spline_knots": [4]}})
    by_grid = tune(tiny_table, FEATURES, grid).report["families"]["ridge"]
    by_optuna = tune(tiny_table, FEATURES, dataclasses.replace(sampled, folds=3)).report
    assert by_optuna["families"]["ridge"]["cv_rmse_mean"] == by_grid["cv_rmse_mean"]


def test_early_stopping_fits_fewer_trees_than_the_cap(tiny_table: pd.DataFrame) -> None:
    X, y = tiny_table[FEATURES].to_numpy(), tiny_table["MEDV"].to_numpy()
    for family, cap in (
        ("gradient_boosting", "n_estimators"),
        ("hist_gradient_boosting", "max_iter"),
    ):
        capped = {f"model__{cap}": 2000, "model__learning_rate": 0.3}
        stopping = (
            build(family, 1.0, 0, n_iter_no_change=5, validation_fraction=0.1)
            .set_params(**capped)
            .fit(X, y)
        )
        full = build(family, 1.0, 0).set_params(**capped).fit(X, y)
        assert fitted_trees(full) == 2000
        trees = fitted_trees(stopping)
        assert trees is not None and trees < 200, family
    report = tune(
        tiny_table,
        FEATURES,
        settings(
            families=["gradient_boosting"],
            grids={"gradient_boosting": {"n_estimators": [2000], "learning_rate": [0.3]}},
            n_iter_no_change=5,
        ),
    ).report
    assert report["best"]["trees"] < 200
    assert report["best"]["best_params"]["n_estimators"] == 2000


def test_nested_cv_reruns_the_whole_selection_inside_each_outer_fold(
    tiny_table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, list[str]]] = []
    real_select = tune_module.select

    def spy(X: np.ndarray, y: np.ndarray, splits: Any, run: TuneSettings, *rest: Any) -> Any:
        selection = real_select(X, y, splits, run, *rest)
        calls.append((len(X), len(splits), sorted(selection.results)))
        return selection

    monkeypatch.setattr(tune_module, "select", spy)
    report = tune(tiny_table, FEATURES, settings(nested=True, outer_folds=3, inner_folds=4)).report
    # the main selection on all 60 rows and 3 folds, then one per outer fold on its 40 rows,
    # every family searched each time on the inner folds
    assert calls[0] == (60, 3, ["random_forest", "ridge"])
    assert calls[1:] == [(40, 4, ["random_forest", "ridge"])] * 3
    nested = report["nested"]
    assert len(nested["fold_rmse"]) == 3 and len(nested["chosen_families"]) == 3
    assert set(nested["chosen_families"]) <= {"ridge", "random_forest"}
    assert report["best"]["nested_cv_rmse_mean"] == nested["rmse_mean"]
    assert nested["rmse_mean"] == pytest.approx(np.mean(nested["fold_rmse"]), abs=1e-6)


def test_monotone_constraints_hold_on_every_row_and_skip_families_that_cannot(
    tiny_table: pd.DataFrame,
) -> None:
    run = settings(
        families=["ridge", "random_forest", "hist_gradient_boosting"],
        grids={"random_forest": {"n_estimators": [20]}, "hist_gradient_boosting": {}},
        monotone={"RM": 1, "LSTAT": -1},
    )
    result = tune(tiny_table, FEATURES, run)
    assert result.report["skipped"] == {"ridge": "cannot honour tune.monotone"}
    assert set(result.report["families"]) == {"random_forest", "hist_gradient_boosting"}
    X = tiny_table[FEATURES]
    for family in ("random_forest", "hist_gradient_boosting"):
        forced = tune(tiny_table, FEATURES, dataclasses.replace(run, family=family)).model
        base = forced.predict(X.to_numpy())
        assert (forced.predict(X.assign(RM=X.RM + 1).to_numpy()) >= base).all(), family
        assert (forced.predict(X.assign(LSTAT=X.LSTAT + 5).to_numpy()) <= base).all(), family


@pytest.mark.e2e
def test_with_monotone_rooms_more_rooms_never_lowers_a_price_on_the_real_data() -> None:
    houses = pd.read_csv(RAW_DATA)
    run = settings(
        families=["hist_gradient_boosting"],
        grids={"hist_gradient_boosting": {"learning_rate": [0.05], "max_leaf_nodes": [7]}},
        monotone={"RM": 1, "LSTAT": -1},
        n_iter_no_change=50,
    )
    model = tune(houses, FEATURES, run).model
    X = houses[FEATURES]
    change = model.predict(X.assign(RM=X.RM + 1).to_numpy()) - model.predict(X.to_numpy())
    assert change.min() >= 0  # on every one of the 506 tracts, not just most
    assert np.median(change) > 1.0


def test_history_is_the_best_so_far_per_family() -> None:
    trials = pd.DataFrame(
        {
            "family": ["ridge"] * 3 + ["lasso"] * 2,
            "trial": [0, 1, 2, 0, 1],
            "state": ["complete", "pruned", "complete", "complete", "complete"],
            "cv_rmse_mean": [4.0, 1.0, 3.5, 5.0, 6.0],
        }
    )
    frame = history(trials, ["ridge", "lasso", "elasticnet"])
    assert list(frame.columns) == ["trial", "ridge", "lasso", "elasticnet"]
    assert frame.ridge.tolist() == [4.0, 4.0, 3.5]  # the pruned 1.0 is not a result
    assert frame.lasso.tolist() == [5.0, 5.0, 5.0]  # carried on past its last candidate
    assert frame.elasticnet.isna().all()  # skipped


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
        ({"search": "random"}, r"tune.search must be one of \['grid', 'optuna'\], got 'random'"),
        ({"trials": 0}, "tune.optuna.trials must be a whole number >= 1"),
        ({"pruning": Pruning(0, 3)}, "tune.optuna.pruning.min_folds must be a whole number >= 1"),
        ({"pruning": Pruning(3, 1)}, "tune.optuna.pruning.reduction_factor must be a whole"),
        ({"nested": "yes"}, "tune.nested must be true or false, got 'yes'"),
        ({"outer_folds": 1}, "tune.nested_cv.outer_folds must be a whole number >= 2"),
        ({"n_iter_no_change": 0}, "tune.early_stopping.n_iter_no_change must be a whole number"),
        ({"validation_fraction": 1.5}, "tune.early_stopping.validation_fraction must lie between"),
        (
            {"monotone": {"RM": 1}, "family": "ridge"},
            "model.family 'ridge' cannot honour tune.monotone",
        ),
        (
            {"monotone": {"RM": 1}, "families": ["ridge", "lasso"]},
            "tune.monotone is set but none of tune.families can honour it",
        ),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


@pytest.mark.parametrize(
    ("monotone", "message"),
    [
        ({"ROOMS": 1}, r"tune.monotone.ROOMS is not a model input; choose from \['CRIM'"),
        ({"B": 1}, "tune.monotone.B is not a model input"),  # dropped by features.drop
        ({"RM": 2}, "tune.monotone.RM must be -1, 0 or 1, got 2"),
    ],
)
def test_bad_monotone_inputs_are_named(
    tiny_table: pd.DataFrame, monotone: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tune(tiny_table, FEATURES, settings(monotone=monotone))


def test_too_many_folds_for_the_data_is_named(tiny_table: pd.DataFrame) -> None:
    with pytest.raises(
        ValueError, match=r"tune.cv.folds is 100 but the training split has 60 rows"
    ):
        tune(tiny_table, FEATURES, settings(folds=100))
    with pytest.raises(ValueError, match=r"tune.nested_cv needs at least .* \(80\), .* has 60"):
        tune(tiny_table, FEATURES, settings(nested=True, outer_folds=8, inner_folds=10))


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
