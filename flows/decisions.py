"""The retraining flow's decisions, as plain functions: what counts as new data, which rows are
held out from both models, how the two are compared, and when the challenger is promoted.

The comparison is paired: both models score the same held-out rows, and the bootstrap resamples
rows (not models), so the noise the two share cancels out of their difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages.contract import COLUMNS
from stages.evaluate import scores

LEVEL = 0.95


def new_rows(candidates: pd.DataFrame, existing: pd.DataFrame) -> pd.DataFrame:
    """The candidate rows that are not already in the data (every column equal, gaps matching
    gaps), each once, in the order they came."""
    names = [column.name for column in COLUMNS]
    seen = set(_keys(existing[names]))
    keys = _keys(candidates[names])
    fresh = []
    for position, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            fresh.append(position)
    return candidates.iloc[fresh].reset_index(drop=True)


def held_out(test: pd.DataFrame, champion_train: pd.DataFrame | None) -> pd.DataFrame:
    """The challenger's test rows that the champion never trained on either (all of them when the
    champion's training rows are unknown): a row either model has seen would flatter it."""
    if champion_train is None:
        return test.reset_index(drop=True)
    names = [column.name for column in COLUMNS if column.name in test.columns]
    seen = set(_keys(champion_train[names]))
    keep = [key not in seen for key in _keys(test[names])]
    return test[keep].reset_index(drop=True)


@dataclass(frozen=True)
class Comparison:
    """Challenger against champion on the same rows: RMSE (and MAE) each, and the challenger's
    RMSE minus the champion's with its paired bootstrap interval."""

    rows: int
    champion_rmse: float
    challenger_rmse: float
    champion_mae: float
    challenger_mae: float
    difference: float
    difference_low: float
    difference_high: float

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 6) for key, value in asdict(self).items()}


def compare(
    actual: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    resamples: int,
    seed: int,
) -> Comparison:
    if len(actual) < 2:
        raise ValueError(
            f"at least 2 held-out rows are needed to compare models, got {len(actual)}"
        )
    ours, theirs = scores(actual, challenger), scores(actual, champion)
    draws = np.random.default_rng(seed).integers(0, len(actual), size=(resamples, len(actual)))
    squared_ours, squared_theirs = (actual - challenger) ** 2, (actual - champion) ** 2
    differences = np.sqrt(squared_ours[draws].mean(axis=1)) - np.sqrt(
        squared_theirs[draws].mean(axis=1)
    )
    tail = (1 - LEVEL) / 2 * 100
    return Comparison(
        rows=len(actual),
        champion_rmse=theirs["rmse"],
        challenger_rmse=ours["rmse"],
        champion_mae=theirs["mae"],
        challenger_mae=ours["mae"],
        difference=ours["rmse"] - theirs["rmse"],
        difference_low=float(np.percentile(differences, tail)),
        difference_high=float(np.percentile(differences, 100 - tail)),
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(comparison: Comparison, margin: float) -> Decision:
    """Promote when the challenger is, with 95% confidence, not worse than the champion by more
    than `margin` (RMSE, $1000s): the upper end of the difference's interval is within it."""
    high = comparison.difference_high
    figures = (
        f"challenger RMSE {comparison.challenger_rmse:.3f} vs champion "
        f"{comparison.champion_rmse:.3f} on {comparison.rows} held-out rows; difference "
        f"{comparison.difference:+.3f}, 95% interval [{comparison.difference_low:+.3f}, "
        f"{high:+.3f}]"
    )
    if high <= margin:
        return Decision(True, f"{figures}: at most {margin} worse, promoted")
    return Decision(False, f"{figures}: may be more than {margin} worse, rejected")


def _keys(table: pd.DataFrame) -> list[tuple[Any, ...]]:
    # NaN != NaN, so gaps are keyed by a marker; float64 values are compared exactly
    values = table.to_numpy(dtype=np.float64)
    return [tuple("gap" if np.isnan(v) else float(v) for v in row) for row in values]
