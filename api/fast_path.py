"""An exact, allocation-light evaluator for the one-row case of imputer + tree-ensemble Pipelines.

scikit-learn spends about 1.5 ms on a one-row predict of the exported Pipeline (input validation in
each step, then a Python-level call per tree stage); that alone would cap a server at a few hundred
requests/s. Here every tree is laid out as a complete binary tree of the ensemble's depth, so one
row walks all trees at once with a few numpy operations per level.

It reproduces scikit-learn's arithmetic: features are rounded to float32 before the comparison
`x <= threshold` (sklearn's trees do the same), and the leaf values are summed in float64.
`tests/model/test_behaviour.py` checks it against the Pipeline on the whole dataset (within 1e-6).
Pipelines of any other shape, and deep trees, are served by the Pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.tree._tree import TREE_LEAF

# A complete tree of depth d has 2^d leaves: beyond this the layout costs more than it saves.
MAX_DEPTH = 10

RowPredictor = Callable[[np.ndarray], float]


def compile_row_predictor(pipeline: Any) -> RowPredictor | None:
    """A function predicting one float64 row exactly as `pipeline` would, or None if unsupported."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    imputer, model = pipeline.steps[0][1], pipeline.steps[1][1]
    if not _plain_imputer(imputer):
        return None
    if isinstance(model, GradientBoostingRegressor) and _constant_init(model):
        trees = [stage.tree_ for stage in model.estimators_[:, 0]]
        scale, offset = float(model.learning_rate), float(model.init_.constant_.ravel()[0])
    elif isinstance(model, RandomForestRegressor):
        trees = [estimator.tree_ for estimator in model.estimators_]
        scale, offset = 1.0 / len(trees), 0.0
    else:
        return None
    if any(tree.n_outputs != 1 or tree.max_depth > MAX_DEPTH for tree in trees):
        return None
    return _ForestLayout(trees, scale, offset, imputer.statistics_).predict


def _plain_imputer(imputer: Any) -> bool:
    return (
        isinstance(imputer, SimpleImputer)
        and not imputer.add_indicator
        and np.isnan(imputer.missing_values)
        and not np.isnan(imputer.statistics_).any()  # no column dropped as all-empty
    )


def _constant_init(model: GradientBoostingRegressor) -> bool:
    init = model.init_
    return (
        model.loss == "squared_error"
        and getattr(init, "strategy", None) in ("mean", "median", "quantile", "constant")
        and hasattr(init, "constant_")
    )


class _ForestLayout:
    def __init__(self, trees: list[Any], scale: float, offset: float, fill: np.ndarray) -> None:
        depth = max(max(tree.max_depth for tree in trees), 1)
        internal, leaves = 2**depth - 1, 2**depth
        count = len(trees)
        self.depth, self.internal = depth, internal
        self.feature = np.zeros((count, internal), dtype=np.intp)
        # +inf sends a padded node left every time, so it forwards its leaf unchanged
        self.threshold = np.full((count, internal), np.inf)
        self.value = np.zeros((count, leaves))
        for index, tree in enumerate(trees):
            self._place(tree, index, node=0, slot=0, level=0)
        self.value *= scale
        self.offset = offset
        # flat addressing: tree t's slot s is t * internal + s
        self.base = np.arange(count, dtype=np.intp) * internal
        self.leaf_base = np.arange(count, dtype=np.intp) * leaves
        self.feature_flat = self.feature.ravel()
        self.threshold_flat = self.threshold.ravel()
        self.value_flat = self.value.ravel()
        # the roots, read without index arithmetic
        self.root_feature = np.ascontiguousarray(self.feature[:, 0])
        self.root_threshold = np.ascontiguousarray(self.threshold[:, 0])
        self.fill32 = fill.astype(np.float32)

    def _place(self, tree: Any, index: int, node: int, slot: int, level: int) -> None:
        if level == self.depth:
            self.value[index, slot - self.internal] = tree.value[node, 0, 0]
            return
        if tree.children_left[node] == TREE_LEAF:
            # A leaf above the bottom level: this slot keeps its always-left padding and the leaf
            # moves down the left branch; the right branch is never reached.
            self._place(tree, index, node, 2 * slot + 1, level + 1)
            return
        self.feature[index, slot] = tree.feature[node]
        self.threshold[index, slot] = tree.threshold[node]
        self._place(tree, index, tree.children_left[node], 2 * slot + 1, level + 1)
        self._place(tree, index, tree.children_right[node], 2 * slot + 2, level + 1)

    def predict(self, row: np.ndarray) -> float:
        """`row`: the Pipeline's input columns, float64, NaN for unknown values."""
        # sklearn's trees compare float32 inputs against float64 thresholds
        x32 = row.astype(np.float32)
        x = np.where(np.isnan(x32), self.fill32, x32).astype(np.float64)
        slot = (x[self.root_feature] > self.root_threshold) + 1
        for _ in range(self.depth - 1):
            at = self.base + slot
            slot = 2 * slot + 1 + (x[self.feature_flat[at]] > self.threshold_flat[at])
        return self.offset + float(self.value_flat[self.leaf_base + slot - self.internal].sum())
