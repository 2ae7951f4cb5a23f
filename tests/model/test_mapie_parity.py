"""The hand-written intervals (conformal.py) equal MAPIE's, the field's library, on the same folds.

MAPIE is a dev dependency only: the served path computes the intervals from the card's handful of
numbers, so the serving image does not carry MAPIE and the artifact pickles none of its internals.
These tests keep the few lines honest against it, on the real tracts (405 calibration rows, the
rest as new houses), the calibrate stage's folds (`tune.cv.folds`, `seed`) and a fast Ridge.

- One group (`bins=1`) is MAPIE's `CrossConformalRegressor(method="base")`: the model fitted on
  all rows gives the centre, plus or minus the conformal quantile of the out-of-fold absolute
  residuals.
- MAPIE 1.x has no Mondrian regressor, so with three groups each group is checked against MAPIE's
  split conformal regressor calibrated on that group's (out-of-fold prediction, price) pairs: an
  estimator that returns the given prediction makes its conformity scores the group's out-of-fold
  absolute residuals, which is what a Mondrian cross-conformal group calibrates on.
- MAPIE's quantile is the ceil((n + 1) * level)-th smallest score (`np.nanquantile` at
  ceil((n + 1) * level) / n, method "lower"), ours exactly. One documented difference: unless
  `allow_infinite_bounds=True`, MAPIE refuses fewer than 1 / (1 - level) scores (10 at 0.9),
  where the quantile needs only level / (1 - level) (9 at 0.9, `conformal.rows_needed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from mapie.regression import CrossConformalRegressor, SplitConformalRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline

from conformal import Intervals, rows_needed
from stages.calibrate import out_of_fold_predictions
from stages.contract import FEATURE_NAMES, TARGET
from stages.families import build
from stages.files import load_params
from tests.conftest import RAW_DATA, REPO

FEATURES = list(FEATURE_NAMES)
CALIBRATION_ROWS = 405  # the training split's size


class GivenPrediction(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A 'prefit' regressor whose prediction is its one input column: a prediction made already."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> GivenPrediction:
        self.n_features_in_ = 1
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, 0]


def given(predictions: np.ndarray) -> np.ndarray:
    return np.asarray(predictions, dtype=np.float64).reshape(-1, 1)


def ridge() -> Pipeline:
    return build("ridge", alpha=1.0, seed=0)


@pytest.fixture(scope="module")
def folds() -> dict[str, int]:
    """The calibrate stage's own fold settings, read as the stage reads them."""
    params = load_params("calibrate", REPO / "dvc.yaml", REPO / "params.yaml")
    return {"folds": int(params["tune"]["cv"]["folds"]), "seed": int(params["seed"])}


@pytest.fixture(scope="module")
def fitted(folds: dict[str, int]) -> dict[str, Any]:
    """Out-of-fold predictions as the calibrate stage makes them, and the full-data model's."""
    table = pd.read_csv(RAW_DATA).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, new = table.iloc[:CALIBRATION_ROWS], table.iloc[CALIBRATION_ROWS:]
    X = train[FEATURES].to_numpy(dtype=np.float64)
    y = train[TARGET.name].to_numpy(dtype=np.float64)
    X_new = new[FEATURES].to_numpy(dtype=np.float64)
    oof = out_of_fold_predictions(ridge(), train, FEATURES, folds["folds"], folds["seed"])
    served = ridge().fit(X, y).predict(X_new)
    return {"X": X, "y": y, "X_new": X_new, "oof": oof, "served": served}


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_one_group_equals_mapie_cross_conformal_base(
    fitted: dict[str, Any], folds: dict[str, int], level: float
) -> None:
    splits = KFold(n_splits=folds["folds"], shuffle=True, random_state=folds["seed"])
    mapie = CrossConformalRegressor(ridge(), confidence_level=level, method="base", cv=splits)
    mapie.fit_conformalize(fitted["X"], fitted["y"])
    centre, bounds = mapie.predict_interval(fitted["X_new"], aggregate_point_predictions=None)

    # the same folds: MAPIE's conformity scores are the calibrate stage's out-of-fold residuals
    residuals = np.abs(fitted["y"] - fitted["oof"])
    np.testing.assert_allclose(mapie.conformity_scores, residuals, rtol=0, atol=1e-9)
    # the same centre: the model fitted on every calibration row
    np.testing.assert_allclose(centre, fitted["served"], rtol=0, atol=1e-9)

    # no censoring here: MAPIE knows nothing of the 50.0 ceiling
    ours = Intervals.calibrate(
        fitted["oof"], fitted["y"], level=level, bins=1, upper_limit=np.inf
    ).many(fitted["served"])
    np.testing.assert_allclose(ours.lower, bounds[:, 0, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.upper, bounds[:, 1, 0], rtol=0, atol=1e-9)
    assert not ours.upper_censored.any()

    # with the ceiling, the only change is the one conformal.py adds: an upper bound cut to 50.0
    censored = Intervals.calibrate(
        fitted["oof"], fitted["y"], level=level, bins=1, upper_limit=TARGET.maximum
    ).many(fitted["served"])
    np.testing.assert_allclose(censored.lower, bounds[:, 0, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        censored.upper, np.minimum(bounds[:, 1, 0], TARGET.maximum), rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(censored.upper_censored, bounds[:, 1, 0] >= TARGET.maximum)


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_each_price_group_equals_mapie_on_its_own_out_of_fold_residuals(
    fitted: dict[str, Any], level: float
) -> None:
    oof, y, served = fitted["oof"], fitted["y"], fitted["served"]
    ours = Intervals.calibrate(oof, y, level=level, bins=3, upper_limit=np.inf)
    bounds = ours.many(served)
    calibration_group = np.searchsorted(ours.edges, oof, side="right")
    new_group = np.searchsorted(ours.edges, served, side="right")
    # the groups are the tertiles of the out-of-fold predictions, and every group has new houses
    np.testing.assert_allclose(ours.edges, np.quantile(oof, [1 / 3, 2 / 3]), rtol=0, atol=0)
    assert sorted(np.bincount(calibration_group)) == [135, 135, 135]
    assert set(new_group) == {0, 1, 2}
    # the dear third's errors are the largest: the point of separate groups
    assert ours.half_widths[2] > max(ours.half_widths[:2])

    for group, half_width in enumerate(ours.half_widths):
        own = calibration_group == group
        mapie = SplitConformalRegressor(
            GivenPrediction().fit(given(oof[own]), y[own]), confidence_level=level, prefit=True
        ).conformalize(given(oof[own]), y[own])
        np.testing.assert_allclose(mapie.conformity_scores, np.abs(y[own] - oof[own]), atol=1e-12)
        centre, theirs = mapie.predict_interval(given(served[new_group == group]))
        np.testing.assert_allclose(theirs[:, 1, 0] - centre, half_width, rtol=0, atol=1e-9)
        np.testing.assert_allclose(bounds.lower[new_group == group], theirs[:, 0, 0], atol=1e-9)
        np.testing.assert_allclose(bounds.upper[new_group == group], theirs[:, 1, 0], atol=1e-9)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_the_conformal_quantile_is_mapies_for_every_group_size(level: float) -> None:
    """Same rank for n = 1 to 150 scores, and the same point below which no finite bound exists."""
    rng = np.random.default_rng(7)
    for n in range(1, 151):
        predicted = rng.normal(22.0, 6.0, n)
        actual = predicted + rng.normal(0.0, 3.0, n)
        mapie = SplitConformalRegressor(
            GivenPrediction().fit(given(predicted), actual), confidence_level=level, prefit=True
        ).conformalize(given(predicted), actual)
        if n < rows_needed(level):
            # no finite quantile: both refuse (MAPIE even with allow_infinite_bounds, which its
            # symmetric-score path does not pass on to the quantile)
            with pytest.raises(ValueError, match="needs at least"):
                Intervals.calibrate(predicted, actual, level=level, bins=1, upper_limit=np.inf)
            with pytest.raises(ValueError, match="too low"):
                mapie.predict_interval(given(np.zeros(1)), allow_infinite_bounds=True)
            continue
        ours = Intervals.calibrate(predicted, actual, level=level, bins=1, upper_limit=np.inf)
        _, theirs = mapie.predict_interval(given(np.zeros(1)), allow_infinite_bounds=True)
        assert ours.half_widths[0] == theirs[0, 1, 0], n
        # MAPIE's default guard asks for 1 / (1 - level) scores, one more than the quantile needs
        if n < 1 / round(1 - level, 9):
            with pytest.raises(ValueError, match="too low"):
                mapie.predict_interval(given(np.zeros(1)))
        else:
            assert mapie.predict_interval(given(np.zeros(1)))[1][0, 1, 0] == ours.half_widths[0]


def test_the_serving_image_does_not_get_mapie() -> None:
    served = (REPO / "api" / "requirements.txt").read_text()
    assert "mapie" not in served.lower()
    assert "mapie" in (REPO / "requirements.lock").read_text()
