"""The references the drift study compares: their sizes, where their rows come from, and what a
larger smoothed reference does to false alarms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftSettings
from studies.drift_calibration import Row, shift_cases, simulate
from studies.drift_population import Population, fit_population
from studies.drift_reference import TRAINING, comparison, effective_rows, fresh, smoothed
from studies.simulation import PipelineParams
from tests.conftest import RAW_DATA, REPO


@pytest.fixture(scope="module")
def population() -> Population:
    return fit_population(pd.read_csv(RAW_DATA), PipelineParams.read(REPO / "params.yaml"))


def test_a_405_row_reference_caps_the_effective_size_near_405() -> None:
    assert effective_rows(405, 405) == pytest.approx(202.5)
    assert effective_rows(405, 100_000) == pytest.approx(403.4, abs=0.1)
    assert effective_rows(405, 10_000) < effective_rows(405, 100_000) < 405
    assert effective_rows(4050, 100_000) == pytest.approx(3892, abs=1)


def test_the_smoothed_reference_is_drawn_from_the_training_rows_alone(
    population: Population,
) -> None:
    rng = np.random.default_rng(0)
    training = population.copula.sample(405, rng)
    stored = smoothed(10).draw(population, training, rng)
    assert stored.shape == (4050, len(population.features))
    for j, name in enumerate(population.features):
        # interpolated between the training rows' values, never past them
        assert training[:, j].min() <= stored[:, j].min()
        assert stored[:, j].max() <= training[:, j].max()
        if name in population.categorical:
            assert set(np.unique(stored[:, j])) <= set(np.unique(training[:, j]))
    assert TRAINING.draw(population, training, rng) is training
    assert fresh(2).draw(population, training, rng).shape == (810, len(population.features))
    with pytest.raises(ValueError, match="multiple >= 1"):
        smoothed(0)
    with pytest.raises(ValueError, match="multiple >= 1"):
        fresh(0)


def test_a_smoothed_reference_cries_wolf_at_a_days_window(population: Population) -> None:
    """The windows come from the population; the smoothed rows only from 405 of its rows, so
    the test reads their noise as drift."""
    no_drift = shift_cases(population)[:1]
    rows = simulate(
        population,
        no_drift,
        trials=2,
        seed=11,
        settings=DriftSettings(0.05, 200),
        sizes=(10_000,),
        references=(TRAINING, smoothed(10)),
    )
    ours, candidate = rows
    assert (ours.reference, ours.reference_rows) == (TRAINING.name, 405)
    assert (candidate.reference, candidate.reference_rows) == (smoothed(10).name, 4050)
    assert candidate.ours == 2
    assert ours.ours <= 1


def test_the_comparison_puts_each_reference_and_size_on_a_line() -> None:
    def row(case: str, size: int, reference: str, flagged: int) -> Row:
        return Row(case, size, 200, 10, case != "no drift", ours=flagged, reference=reference,
                   reference_rows=405 if reference == "a" else 4050)  # fmt: skip

    rows = [
        row("no drift", 1000, "a", 1),
        row("no drift", 200, "a", 0),
        row("shift", 200, "a", 5),
        row("no drift", 200, "b", 10),
    ]
    lines = comparison(rows, ["no drift", "shift"]).splitlines()
    assert lines[0].startswith("| reference | reference rows | window rows | effective rows")
    assert "| no drift: flagged [95% CI] | shift: flagged [95% CI] |" in lines[0]
    assert [line.split(" | ")[:3] for line in lines[2:]] == [
        ["| a", "405", "200"],
        ["| a", "405", "1000"],
        ["| b", "4050", "200"],
    ]
    assert lines[2].endswith(" |   0.0% [0.0%, 27.8%] |  50.0% [23.7%, 76.3%] |")
    assert lines[3].endswith(" | - |")  # no shift row at 1,000 rows
    assert "| 288 |" in lines[3]  # 405 * 1000 / 1405
