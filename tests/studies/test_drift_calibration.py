"""The drift rule's calibration study, with a handful of trials: its output and its sanity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftSettings
from studies.drift_calibration import (
    Case,
    Row,
    candidate_checks,
    default_cases,
    main,
    real_rows,
    shift_cases,
    simulate,
    table,
    targets,
)
from studies.drift_population import FloatArray, Population, fit_population
from studies.drift_reference import TRAINING, smoothed
from studies.simulation import PipelineParams
from tests.conftest import RAW_DATA, REPO

SMALL = DriftSettings(alpha=0.05, min_rows=100)


@pytest.fixture(scope="module")
def params() -> PipelineParams:
    return PipelineParams.read(REPO / "params.yaml")


@pytest.fixture(scope="module")
def population(params: PipelineParams) -> Population:
    return fit_population(pd.read_csv(RAW_DATA), params)


def test_the_cases_do_what_they_say(population: Population) -> None:
    base = population.copula.sample(500, np.random.default_rng(1))
    cases = {case.name: case for case in default_cases(population)}
    rng = np.random.default_rng(2)
    chas, lstat = population.features.index("CHAS"), population.features.index("LSTAT")
    assert np.array_equal(cases["no drift"].transform(base.copy(), rng), base)
    flipped = cases["CHAS flipped (1 - CHAS)"].transform(base.copy(), rng)
    assert np.array_equal(flipped[:, chas], 1 - base[:, chas])
    gaps = cases["gaps: 20% of LSTAT, CRIM missing"].transform(base.copy(), rng)
    assert np.isnan(gaps).sum(axis=0)[lstat] == 100
    for sds in (0.1, 0.25, 0.5):
        shifted = cases[f"LSTAT +{sds:g} sd"].transform(base.copy(), rng)
        assert np.allclose(shifted[:, lstat] - base[:, lstat], sds * population.sd["LSTAT"])


def test_the_days_window_cases_are_no_drift_and_the_shifts(population: Population) -> None:
    """The cases the large windows run: the others are caught every time at 200 rows already."""
    names = [case.name for case in shift_cases(population)]
    assert names == ["no drift", "LSTAT +0.1 sd", "LSTAT +0.25 sd", "LSTAT +0.5 sd"]
    assert [case.name for case in default_cases(population)][:4] == names


def test_a_huge_shift_is_always_detected_and_the_rows_are_complete(
    population: Population,
) -> None:
    lstat = population.features.index("LSTAT")

    def huge(window: FloatArray, rng: np.random.Generator) -> FloatArray:
        window[:, lstat] += 5 * population.sd["LSTAT"]
        return window

    cases = [Case("no drift", lambda window, rng: window, False), Case("huge", huge, True)]
    rows = simulate(population, cases, trials=3, seed=0, settings=SMALL, sizes=(100,))
    assert [(row.case, row.rows, row.trials, row.min_rows) for row in rows] == [
        ("no drift", 100, 3, 100),
        ("huge", 100, 3, 100),
    ]
    calm, alarm = rows
    assert 0 <= calm.ours <= calm.naive <= 3
    assert alarm.ours == alarm.naive == 3
    assert alarm.columns["LSTAT"] == 3

    text = table(rows)
    assert text.count("\n") == 3  # header, rule, one line per row
    assert "| huge | 100 | 100 | 3 | 100.0% [" in text
    checks = targets(rows)
    assert [check.text.split(":")[0] for check in checks] == [
        "false alarms <= 5%, no drift, 100 rows"
    ]
    assert checks[0].status in {"MET", "NOISE", "MISSED"}


def test_the_same_seed_gives_the_same_counts(population: Population) -> None:
    cases = default_cases(population)[:2]
    first = simulate(population, cases, trials=2, seed=5, settings=SMALL, sizes=(100,))
    again = simulate(population, cases, trials=2, seed=5, settings=SMALL, sizes=(100,))
    assert [(r.ours, r.naive, r.columns) for r in first] == [
        (r.ours, r.naive, r.columns) for r in again
    ]


def test_real_rows_use_windows_of_one_hundred_held_out_tracts(population: Population) -> None:
    rows = real_rows(population, trials=2, seed=0, alpha=0.05)
    assert [row.case for row in rows] == [
        "real tracts, one split",
        "real tracts, one split, OOF reference",
        "real tracts, fresh split per trial",
    ]
    assert all(row.rows == row.min_rows == 100 and row.trials == 2 for row in rows)
    assert [row.independent for row in rows] == [False, False, True]
    assert population.real.shape[0] - population.reference_rows == 101
    assert "(one split)" in table(rows)


def test_a_target_is_missed_only_when_the_interval_excludes_it() -> None:
    def row(flagged: int, trials: int) -> Row:
        return Row("no drift", 500, 200, trials, drift=False, ours=flagged)

    assert [check.status for check in targets([row(9, 200)])] == ["MET"]  # 4.5%
    assert [check.status for check in targets([row(11, 200)])] == ["NOISE"]  # 5.5% [3.1, 9.6]
    assert [check.status for check in targets([row(30, 200)])] == ["MISSED"]  # 15% [10.7, 20.6]


def test_only_the_training_reference_is_held_to_the_targets() -> None:
    """The candidate reference is measured, not the rule: its false alarms are reported apart
    and never set the exit status."""
    candidate = smoothed(10).name
    rows = [
        Row("no drift", 10_000, 200, 100, drift=False, ours=3),
        Row("no drift", 10_000, 200, 100, drift=False, ours=100, reference=candidate),
        Row("LSTAT +0.5 sd", 500, 200, 100, drift=True, ours=100, reference=candidate),
    ]
    assert [check.text for check in targets(rows)] == [
        "false alarms <= 5%, no drift, 10000 rows: 3.0% [1.0%, 8.5%]"
    ]
    assert [check.status for check in targets(rows)] == ["MET"]
    checks = candidate_checks(rows)
    assert [(check.status, check.text.split(":")[0]) for check in checks] == [
        ("MISSED", f"false alarms <= 5% ({candidate}), no drift, 10000 rows")
    ]
    assert rows[0].reference == TRAINING.name


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data", str(RAW_DATA), "--params", str(REPO / "params.yaml"), "--trials", "1",
                 "--seed", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "| case | window rows | min_rows | trials |" in out
    assert out.count("| no drift |") == 5  # one line per window size, 200 to 100,000 rows
    assert "detection >= 80%, LSTAT +0.5 sd, 500 rows" in out
    assert "trials (1 at 10,000 and 100,000 rows)" in out  # never more than --trials
    assert "| reference | reference rows | window rows | effective rows" in out
    assert out.count("| copula of the training rows, x10 | 4050 |") == 5
    with pytest.raises(SystemExit):
        main(["--trials", "0"])
    with pytest.raises(SystemExit):
        main(["--large-trials", "0"])


def test_its_settings_are_the_pipelines(tmp_path: Path) -> None:
    """The study reads the split, folds and bins from params.yaml, as the pipeline does."""
    text = (REPO / "params.yaml").read_text()
    text = text.replace("test_size: 0.2", "test_size: 0.25").replace("drop: [B]", "drop: []")
    changed = tmp_path / "params.yaml"
    changed.write_text(text)
    params = PipelineParams.read(changed)
    assert (params.test_size, params.drop) == (0.25, [])
    population = fit_population(pd.read_csv(RAW_DATA), params)
    assert population.reference_rows == 506 - round(506 * 0.25)
    assert "B" in population.features
    assert population.bins == params.reference_bins
