"""What the studies share: the params they mirror, the stand-in's real errors, a rate's
interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformal import wilson
from studies.simulation import PipelineParams, residuals_of, share_cell
from tests.conftest import REPO, synthetic_table


def test_the_params_are_params_yamls() -> None:
    params = PipelineParams.read(REPO / "params.yaml")
    assert params.drop == ["B"]
    assert params.test_rows(506) == 101  # as the preprocess stage counts its test rows
    assert 0 < params.alpha < 1 and params.bootstrap >= 100 and params.retrain_bootstrap >= 100


def test_a_missing_param_is_named(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text().replace("  reference_bins:", "  renamed_bins:")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ValueError, match="lacks 'reference_bins', which the studies read"):
        PipelineParams.read(tmp_path / "params.yaml")


def test_the_residuals_are_out_of_fold_and_seeded() -> None:
    table = synthetic_table(60, seed=1)
    residuals = residuals_of(table, ["B"], seed=2)
    assert residuals.shape == (60,) and np.isfinite(residuals).all()
    assert np.array_equal(residuals, residuals_of(table, ["B"], seed=2))
    unlabelled = pd.concat([table, table.iloc[[0]].assign(MEDV=np.nan)], ignore_index=True)
    assert residuals_of(unlabelled, ["B"], seed=2).shape == (60,)


def test_wilson_interval() -> None:
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(5, 10)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.2366, abs=1e-4)
    assert share_cell(5, 10) == " 50.0% [23.7%, 76.3%]"
