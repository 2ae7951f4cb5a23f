"""The promotion rule's calibration study, on synthetic errors and with a few trials."""

from __future__ import annotations

import numpy as np
import pytest

from studies.promotion_calibration import main, simulate
from tests.conftest import RAW_DATA, REPO


def test_the_rule_rarely_promotes_a_worse_challenger_and_usually_an_equal_one() -> None:
    residuals = np.random.default_rng(6).standard_t(5, 506) * 3
    promoted = simulate(residuals, margin=0.5, held_out=101, resamples=1000, trials=60, seed=7)
    assert promoted[0.9, 2.0] <= 3  # worse by twice the margin
    assert promoted[0.9, 0.0] >= 30  # as good
    assert promoted[0.9, -2.0] >= 50  # better


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data", str(RAW_DATA), "--params", str(REPO / "params.yaml"), "--trials", "2"]
    assert main([*argv, "--margin", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "margin 0.3, 101 held-out rows" in out
    assert out.count("\n0.9 | ") == 6 and out.count("\n0.7 | ") == 6  # one line per shift
