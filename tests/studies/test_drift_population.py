"""The drift study's population: the copula keeps the real columns' facts, the rule runs on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftSettings
from stages.contract import model_features
from studies.drift_population import Population, fit_population
from studies.simulation import PipelineParams
from tests.conftest import RAW_DATA, REPO


@pytest.fixture(scope="module")
def population() -> Population:
    return fit_population(pd.read_csv(RAW_DATA), PipelineParams.read(REPO / "params.yaml"))


def test_the_copula_keeps_the_columns_facts(population: Population) -> None:
    assert list(population.features) == model_features(["B"])
    assert population.categorical == {"CHAS", "RAD"}
    draw = population.copula.sample(2000, np.random.default_rng(0))
    assert draw.shape == (2000, len(population.features))
    for j, name in enumerate(population.features):
        real = population.real[:, j]
        assert real.min() <= draw[:, j].min() and draw[:, j].max() <= real.max()
        if name in population.categorical:
            assert set(np.unique(draw[:, j])) <= set(np.unique(real))
    lstat, rm = population.features.index("LSTAT"), population.features.index("RM")
    assert np.corrcoef(draw[:, lstat], draw[:, rm])[0, 1] < -0.4  # the real rank correlation


# identical samples give a KS statistic of 0, where scipy's exact method gives up and says so
@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
def test_a_window_of_its_own_reference_rows_does_not_drift(population: Population) -> None:
    """The profile and the judge wire the export stage's builder to the rule: a reference
    compared with itself cannot differ."""
    rows = population.copula.sample(300, np.random.default_rng(4))
    predictions = population.predict(rows)
    profile = population.profile(rows, predictions)
    assert profile["rows"] == 300 and set(profile["features"]) == set(population.features)
    verdict = population.judge(profile, rows, predictions, DriftSettings(0.05, 200))
    assert not verdict.too_small and not verdict.drift
    assert len(verdict.columns) == len(population.features) + 1  # the inputs and the prediction


def test_the_data_must_hold_the_model_inputs() -> None:
    table = pd.read_csv(RAW_DATA).drop(columns=["LSTAT"])
    with pytest.raises(ValueError, match="LSTAT"):
        fit_population(table, PipelineParams.read(REPO / "params.yaml"))
