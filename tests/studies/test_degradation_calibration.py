"""The degraded rule's calibration study, on synthetic errors and with a few trials."""

from __future__ import annotations

import numpy as np
import pytest

from studies.degradation_calibration import main, simulate
from tests.conftest import RAW_DATA, REPO


def test_the_calibration_separates_healthy_from_grown_errors() -> None:
    residuals = np.random.default_rng(8).standard_t(4, 506)
    fired = simulate(residuals, test_rows=101, resamples=1000, trials=200, seed=9)
    assert fired["interval", 100, 1.0] <= 10  # at most 5% false alarms
    assert fired["interval", 100, 2.0] >= 100  # over half caught once errors double
    assert fired["point", 100, 1.0] > fired["interval", 100, 1.0]


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data", str(RAW_DATA), "--params", str(REPO / "params.yaml"), "--trials", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "card interval from a test split of 101 rows, 1000 bootstrap resamples" in out
    assert out.count("interval |") == 4 and out.count("point    |") == 4  # one line per size
