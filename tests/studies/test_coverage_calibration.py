"""The coverage verdict's calibration study, with a few trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitoring.coverage import CoverageSettings, sequential_verdict
from studies.coverage_calibration import (
    BATCH,
    CALIBRATED,
    LABELS,
    first_alarm,
    first_naive_alarm,
    main,
    simulate,
)
from tests.conftest import RAW_DATA, REPO

SETTINGS = CoverageSettings(alpha=0.05, alternatives=(0.05, 0.1, 0.2))


def test_the_sequential_verdict_holds_its_level_where_the_naive_one_does_not() -> None:
    alarms = simulate(405, SETTINGS, trials=200, seed=3)
    calibrated = alarms[CALIBRATED]
    sequential = sum(seen is not None for seen in calibrated["sequential"])
    naive = sum(seen is not None for seen in calibrated["naive"])
    assert sequential <= 20  # at most 10% of 200 (alpha is 5%)
    assert naive > 2 * sequential and naive >= 20
    dropped = alarms["coverage 80%"]["sequential"]
    assert all(seen is not None for seen in dropped)  # every 80% stream caught in 2,000 labels
    assert np.median([seen for seen in dropped if seen is not None]) <= 500


def test_a_stream_alarms_at_the_first_run_whose_verdict_alarms() -> None:
    missed = np.random.default_rng(4).random(LABELS) >= 0.8
    seen = first_alarm(missed, SETTINGS)
    assert seen is not None and seen % BATCH == 0
    levels = np.full(LABELS, 0.9)
    assert sequential_verdict(missed[:seen], levels[:seen], SETTINGS).alarm
    earlier = seen - BATCH
    assert (
        earlier == 0 or not sequential_verdict(missed[:earlier], levels[:earlier], SETTINGS).alarm
    )


def test_the_naive_test_rejects_at_its_first_significant_run() -> None:
    missed = np.zeros(LABELS, dtype=bool)
    assert first_naive_alarm(missed) is None
    missed[:10] = True  # 10 misses in the first 50: P(X >= 10 | 50, 0.1) is about 2.5%
    assert first_naive_alarm(missed) == BATCH


def test_the_command_prints_the_table_and_writes_the_results(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "coverage.md"
    argv = ["--data", str(RAW_DATA), "--params", str(REPO / "params.yaml"), "--trials", "2",
            "--results", str(path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "alpha 0.05, alternatives 1 - level + {0.05, 0.1, 0.2}" in out
    for stream in (CALIBRATED, "conformal on 405 rows", "coverage 85%", "coverage 80%"):
        assert out.count(f"\n{stream} |") == 1
    written = path.read_text()
    assert written.startswith("# Coverage verdict calibration\n")
    assert "- Command: `python -m studies.coverage_calibration --data" in written
