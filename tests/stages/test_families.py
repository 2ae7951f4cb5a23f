"""The model families: every one builds a Pipeline that fits data with gaps, and a setting it
cannot honour is refused with a message naming it (bad grid keys: test_tune.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.contract import model_features
from stages.families import FAMILIES, build

FEATURES = model_features(["B"])


def test_every_family_builds_and_fits_data_with_gaps(tiny_table: pd.DataFrame) -> None:
    gappy = tiny_table.copy()
    gappy.loc[::5, "LSTAT"] = float("nan")
    for family in FAMILIES:
        pipeline = build(family, alpha=1.0, seed=0)
        pipeline.fit(gappy[FEATURES].to_numpy(), gappy["MEDV"].to_numpy())
        assert pipeline.predict(gappy[FEATURES].to_numpy()[:3]).shape == (3,)


def test_a_family_without_monotonic_support_refuses_constraints() -> None:
    with pytest.raises(ValueError, match="gradient_boosting cannot honour monotonic constraints"):
        build("gradient_boosting", 1.0, 0, monotonic_cst=[1] * len(FEATURES))


def test_early_stopping_needs_its_validation_fraction() -> None:
    with pytest.raises(ValueError, match=r"early stopping \(n_iter_no_change\) needs a validation"):
        build("gradient_boosting", 1.0, 0, n_iter_no_change=5)
