"""An exact, allocation-light evaluator for the one-row case of imputer + tree-ensemble Pipelines.

scikit-learn's one-row predict of the exported Pipeline validates its input in each step, then
makes a Python-level call per tree stage: that alone would cap a server at a few hundred
requests a second (docs/decisions/0009-trees-fast-path.md). Here the trees are scored the
QuickScorer way (Lucchese et al., SIGIR 2015), with a dozen numpy operations per row whatever
the number of trees:

- each tree's leaves, left to right, are the bits of one integer (so a tree may have at most 64);
- a row that goes right of a split can never reach the leaves of its left subtree: the split's mask
  clears their bits, and the row's exit leaf is the lowest bit left after every such mask;
- per feature the splits are sorted by threshold, so those a row goes right of (threshold < value)
  are a prefix, and the AND of every prefix's masks is computed at load time. A row costs one
  comparison per distinct threshold, one prefix per feature and an AND over the features.

It reproduces scikit-learn's arithmetic: features are rounded to float32 before the comparison
`x <= threshold` (sklearn's trees do the same), and the leaf values are summed in float64.
`tests/model/test_behaviour.py` checks it against the Pipeline on the whole dataset (within 1e-6).
Pipelines of any other shape, and trees of more leaves, are served by the Pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.tree._tree import TREE_LEAF

MAX_LEAVES = 64  # the widest mask, one uint64 per tree
# The prefix tables grow with splits x trees; past this the Pipeline is served instead.
MAX_TABLE_BYTES = 64 * 2**20

RowPredictor = Callable[[np.ndarray], float]
_MASKS = (np.uint8, np.uint16, np.uint32, np.uint64)


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
    if any(tree.n_outputs != 1 or tree.n_leaves > MAX_LEAVES for tree in trees):
        return None
    scorer = _QuickScorer(trees, scale, offset, imputer.statistics_)
    return scorer.predict if scorer.prefixes.nbytes <= MAX_TABLE_BYTES else None


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


class _QuickScorer:
    def __init__(self, trees: list[Any], scale: float, offset: float, fill: np.ndarray) -> None:
        count = len(trees)
        widest = max(tree.n_leaves for tree in trees)
        mask_type = next(mask for mask in _MASKS if np.iinfo(mask).bits >= widest)
        bits = np.iinfo(mask_type).bits
        leaf_values = np.zeros((count, bits))
        splits: list[tuple[int, float, int, int]] = []  # feature, threshold, tree, mask
        for index, tree in enumerate(trees):
            leaves = _leaves_and_splits(tree, index, bits, splits)
            leaf_values[index, : len(leaves)] = tree.value[leaves, 0, 0] * scale
        self.offset = offset
        self.fill32 = fill.astype(np.float32)

        # Per feature, its distinct thresholds ascending (`thresholds`, read with `features`);
        # `starts` says where each feature's run begins. Prefix k of a feature (the row goes
        # right of its k lowest thresholds) is row `bases[f] + k` of `prefixes`: the AND, tree by
        # tree, of the masks of those splits.
        splits.sort()
        ones = np.iinfo(mask_type).max
        features: list[int] = []
        thresholds: list[float] = []
        starts: list[int] = []
        blocks: list[np.ndarray] = []
        for feature, group in groupby(splits, key=itemgetter(0)):
            own = list(group)
            distinct = sorted({threshold for _, threshold, _, _ in own})
            rank = {threshold: k for k, threshold in enumerate(distinct)}
            block = np.full((len(distinct) + 1, count), ones, dtype=mask_type)
            for _, threshold, tree_index, mask in own:
                block[rank[threshold] + 1, tree_index] &= mask_type(mask)
            starts.append(len(features))
            features += [feature] * len(distinct)
            thresholds += distinct
            blocks.append(np.bitwise_and.accumulate(block, axis=0))
        self.features = np.array(features, dtype=np.intp)
        self.thresholds = np.array(thresholds, dtype=np.float64)
        self.starts = np.array(starts, dtype=np.intp)
        self.bases = np.cumsum([0] + [len(block) for block in blocks[:-1]], dtype=np.intp)
        self.prefixes = np.concatenate(blocks)
        self.leaf_values = leaf_values.ravel()
        if bits == 8:
            # the index of each byte's lowest set bit, from a table small enough to stay cached
            self.lowest_bit: np.ndarray | None = np.array(
                [(m & -m).bit_length() - 1 if m else 0 for m in range(256)], dtype=np.intp
            )
            self.leaf_base = np.arange(count, dtype=np.intp) * bits
        else:
            self.lowest_bit = None
            # the lowest set bit, as a float32, has its index + 127 in its exponent field
            self.leaf_base = np.arange(count, dtype=np.intp) * bits - 127

    def predict(self, row: np.ndarray) -> float:
        """`row`: the Pipeline's input columns, float64, NaN for unknown values."""
        # sklearn's trees compare float32 inputs against float64 thresholds
        x32 = row.astype(np.float32)
        x = np.where(np.isnan(x32), self.fill32, x32).astype(np.float64)
        gone_right = np.add.reduceat(x.take(self.features) > self.thresholds, self.starts)
        masks = np.bitwise_and.reduce(self.prefixes.take(self.bases + gone_right, axis=0), axis=0)
        if self.lowest_bit is not None:
            lowest = self.lowest_bit.take(masks)
        else:
            lowest = (masks & -masks).astype(np.float32).view(np.int32) >> 23
        return self.offset + float(self.leaf_values.take(self.leaf_base + lowest).sum())


def _leaves_and_splits(
    tree: Any, index: int, bits: int, splits: list[tuple[int, float, int, int]]
) -> list[int]:
    """The tree's leaves, left to right; each split's mask (its left subtree's leaves cleared)
    is appended to `splits`."""
    leaves: list[int] = []
    everything = (1 << bits) - 1

    def walk(node: int) -> None:
        if tree.children_left[node] == TREE_LEAF:
            leaves.append(node)
            return
        first = len(leaves)
        walk(tree.children_left[node])
        left = (1 << len(leaves)) - (1 << first)
        splits.append(
            (int(tree.feature[node]), float(tree.threshold[node]), index, everything ^ left)
        )
        walk(tree.children_right[node])

    walk(0)
    return leaves
