"""The retraining flow's decisions, without Prefect: what is new, what is held out, the paired
comparison and the promotion rule (its calibration: tests/studies)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.decisions import Comparison, compare, decide, held_out, new_rows
from stages.evaluate import scores
from tests.conftest import synthetic_table


def test_new_rows_are_those_not_in_the_data_each_once() -> None:
    existing = synthetic_table(10, seed=1)
    fresh = synthetic_table(3, seed=2)
    candidates = pd.concat([existing.iloc[[2, 5]], fresh, fresh.iloc[[0]]], ignore_index=True)
    found = new_rows(candidates, existing)
    pd.testing.assert_frame_equal(found, fresh.reset_index(drop=True))
    assert new_rows(existing, existing).empty


def test_gaps_match_gaps() -> None:
    existing = synthetic_table(4, seed=3)
    existing.loc[1, "CRIM"] = np.nan
    again = existing.iloc[[1]].copy()
    assert new_rows(again, existing).empty
    again.loc[again.index[0], "CRIM"] = 0.5  # the gap filled in: another row
    assert len(new_rows(again, existing)) == 1


def test_held_out_rows_leave_out_what_the_champion_trained_on() -> None:
    table = synthetic_table(10, seed=4)
    kept = held_out(table, table.iloc[:4])
    pd.testing.assert_frame_equal(kept, table.iloc[4:].reset_index(drop=True))
    assert len(held_out(table, None)) == 10


def test_the_comparison_uses_the_pipelines_metric_code_and_is_paired() -> None:
    rng = np.random.default_rng(5)
    actual = rng.normal(22, 8, 101)
    champion = actual + rng.normal(0, 3, 101)
    # the challenger makes the champion's errors plus a little: a paired interval is narrow
    challenger = champion + rng.normal(0, 0.3, 101)
    comparison = compare(actual, champion, challenger, resamples=1000, seed=0)
    assert comparison.champion_rmse == scores(actual, champion)["rmse"]
    assert comparison.challenger_mae == scores(actual, challenger)["mae"]
    assert comparison.difference == pytest.approx(
        comparison.challenger_rmse - comparison.champion_rmse
    )
    assert comparison.difference_low <= comparison.difference <= comparison.difference_high
    assert comparison.difference_high - comparison.difference_low < 0.3
    assert compare(actual, champion, challenger, 1000, 0) == comparison  # seeded


def test_too_few_held_out_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 held-out rows"):
        compare(np.ones(1), np.ones(1), np.ones(1), 100, 0)


def _comparison(low: float, high: float) -> Comparison:
    return Comparison(100, 3.0, 3.0 + (low + high) / 2, 2.0, 2.0, (low + high) / 2, low, high)


def test_promoted_only_when_the_whole_interval_is_within_the_margin() -> None:
    assert decide(_comparison(-0.4, 0.5), margin=0.5).promote
    assert not decide(_comparison(-0.4, 0.51), margin=0.5).promote
    rejected = decide(_comparison(0.2, 0.9), margin=0.5)
    assert "may be more than 0.5 worse, rejected" in rejected.reason
    assert "[+0.200, +0.900]" in rejected.reason
