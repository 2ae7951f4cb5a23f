"""The fast path must give the Pipeline's answers, and step aside for what it does not cover."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from api import fast_path
from api.fast_path import MAX_LEAVES, compile_row_predictor
from stages.contract import TARGET, model_features
from stages.families import build
from tests.conftest import synthetic_table

FEATURES = model_features(["B"])


def _fitted(model: Any) -> Pipeline:
    table = synthetic_table(120, seed=3)
    X = table[FEATURES].to_numpy()
    X[::4, 0] = np.nan  # gaps for the imputer to fill
    pipeline = Pipeline([("impute", SimpleImputer(strategy="median")), ("model", model)])
    return pipeline.fit(X, table[TARGET.name].to_numpy())


def _rows() -> np.ndarray:
    rows = synthetic_table(200, seed=4)[FEATURES].to_numpy()
    rows[::3, 2] = np.nan
    return rows


@pytest.mark.parametrize(
    "model",
    [
        GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0),
        GradientBoostingRegressor(n_estimators=40, max_depth=4, random_state=0),
        GradientBoostingRegressor(n_estimators=30, max_depth=5, subsample=0.7, random_state=0),
        RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0),
    ],
)
def test_fast_path_matches_the_pipeline(model: Any) -> None:
    pipeline = _fitted(model)
    predict_row = compile_row_predictor(pipeline)
    assert predict_row is not None
    rows = _rows()
    fast = np.array([predict_row(row) for row in rows])
    np.testing.assert_allclose(fast, pipeline.predict(rows), rtol=0, atol=1e-9)


def test_values_on_a_threshold_follow_sklearn() -> None:
    # Inputs equal to the training values sit next to split thresholds, where a float32/float64
    # slip would send them down the other branch.
    pipeline = _fitted(GradientBoostingRegressor(n_estimators=40, random_state=0))
    predict_row = compile_row_predictor(pipeline)
    assert predict_row is not None
    training = synthetic_table(120, seed=3)[FEATURES].to_numpy()
    fast = np.array([predict_row(row) for row in training])
    np.testing.assert_allclose(fast, pipeline.predict(training), rtol=0, atol=1e-9)


def test_an_ensemble_too_large_to_tabulate_is_left_to_sklearn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = _fitted(GradientBoostingRegressor(n_estimators=40, random_state=0))
    assert compile_row_predictor(pipeline) is not None
    monkeypatch.setattr(fast_path, "MAX_TABLE_BYTES", 1024)
    assert compile_row_predictor(pipeline) is None


@pytest.mark.parametrize(
    "pipeline",
    [
        build("ridge", alpha=1.0, seed=0),
        build("hist_gradient_boosting", alpha=1.0, seed=0),
        Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("model", RandomForestRegressor(n_estimators=3, random_state=0)),
            ]
        ),
    ],
)
def test_unsupported_pipelines_are_left_to_sklearn(pipeline: Pipeline) -> None:
    table = synthetic_table(300, seed=5)
    pipeline.fit(table[FEATURES].to_numpy(), table[TARGET.name].to_numpy())
    deep = getattr(pipeline.named_steps["model"], "estimators_", None)
    if deep is not None:  # an unbounded forest on 300 rows grows more leaves than a mask holds
        assert max(tree.tree_.n_leaves for tree in deep) > MAX_LEAVES
    assert compile_row_predictor(pipeline) is None
