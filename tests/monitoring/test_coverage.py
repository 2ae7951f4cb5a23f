"""The coverage verdict's test martingale: its arithmetic, its alarms, and its settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.coverage import (
    CoverageSettings,
    log_wealth,
    sequential_verdict,
    window_coverage,
)

SETTINGS = CoverageSettings(alpha=0.05, alternatives=(0.05, 0.1, 0.2))


def stream(coverage: float, labels: int, seed: int) -> np.ndarray:
    """Miss indicators of intervals that cover with probability `coverage`."""
    return np.random.default_rng(seed).random(labels) >= coverage


def test_each_label_multiplies_the_wealth_by_the_likelihood_ratio() -> None:
    one = CoverageSettings(alpha=0.05, alternatives=(0.1,))
    # level 0.9 against miss rate 0.2: a miss doubles the wealth, a cover multiplies by 0.8 / 0.9
    path = log_wealth(np.array([True, False]), np.array([0.9, 0.9]), one)
    assert np.exp(path) == pytest.approx([2.0, 2.0 * 0.8 / 0.9])


def test_the_mixture_is_the_mean_of_its_alternatives_wealths() -> None:
    missed, levels = stream(0.8, 60, seed=1), np.full(60, 0.9)
    alone = [
        np.exp(log_wealth(missed, levels, CoverageSettings(0.05, (d,))))
        for d in SETTINGS.alternatives
    ]
    mixed = np.exp(log_wealth(missed, levels, SETTINGS))
    assert mixed == pytest.approx(np.mean(alone, axis=0), rel=1e-12)


def test_each_interval_is_judged_against_its_own_level() -> None:
    one = CoverageSettings(alpha=0.05, alternatives=(0.1,))
    path = log_wealth(np.array([True, True]), np.array([0.9, 0.8]), one)
    assert np.exp(path[-1]) == pytest.approx((0.2 / 0.1) * (0.3 / 0.2))


def test_an_alternative_without_room_above_the_miss_rate_does_not_bet() -> None:
    # level 0.1: a miss rate of 0.9 + 0.2 is impossible, so that alternative's wealth stays 1
    path = log_wealth(
        np.array([True, False, True]), np.full(3, 0.1), CoverageSettings(0.05, (0.2,))
    )
    assert path == pytest.approx([0.0, 0.0, 0.0])


def test_a_calibrated_stream_does_not_alarm() -> None:
    verdict = sequential_verdict(stream(0.9, 2000, seed=2), np.full(2000, 0.9), SETTINGS)
    assert not verdict.alarm and verdict.alarm_at_label is None
    assert verdict.max_log_wealth < math.log(20)
    assert verdict.as_dict()["coverage"] == pytest.approx(0.9, abs=0.02)


def test_intervals_wider_than_needed_never_alarm() -> None:
    verdict = sequential_verdict(np.zeros(5000, dtype=bool), np.full(5000, 0.9), SETTINGS)
    assert not verdict.alarm and verdict.max_log_wealth == 0.0


def test_coverage_of_60_percent_alarms_and_the_alarm_persists() -> None:
    missed = stream(0.6, 200, seed=3)
    verdict = sequential_verdict(missed, np.full(200, 0.9), SETTINGS)
    assert verdict.alarm and verdict.as_dict()["max_e_value"] >= 20
    at = verdict.alarm_at_label
    assert at is not None and at < 100
    # the label that raised it: the first prefix whose verdict alarms
    assert not sequential_verdict(missed[: at - 1], np.full(at - 1, 0.9), SETTINGS).alarm
    assert sequential_verdict(missed[:at], np.full(at, 0.9), SETTINGS).alarm
    # a thousand covers afterwards bring the wealth down, not the alarm
    later = np.concatenate([missed, np.zeros(1000, dtype=bool)])
    after = sequential_verdict(later, np.full(len(later), 0.9), SETTINGS)
    assert after.log_wealth < math.log(20) <= after.max_log_wealth
    assert after.alarm_at_label == at


def test_a_window_reports_its_coverage_with_the_wilson_interval() -> None:
    covered = np.array([True] * 90 + [False] * 10)
    figures = window_coverage(covered, np.full(100, 0.9))
    # Wilson's 95% interval of 90 in 100, from the formula
    assert figures == {
        "rows": 100,
        "covered": 90,
        "coverage": 0.9,
        "coverage_ci95": [0.8256, 0.9448],
        "nominal_coverage": 0.9,
    }


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"coverage_alternatives": [0.1]}, "monitoring.coverage_alpha"),
        ({"coverage_alpha": 0.05}, "monitoring.coverage_alternatives"),
        ({"coverage_alpha": 1.5, "coverage_alternatives": [0.1]}, "coverage_alpha"),
        ({"coverage_alpha": 0.05, "coverage_alternatives": []}, "coverage_alternatives"),
        ({"coverage_alpha": 0.05, "coverage_alternatives": [0.1, 1.0]}, "coverage_alternatives"),
        ({"coverage_alpha": 0.05, "coverage_alternatives": 0.1}, "coverage_alternatives"),
    ],
)
def test_bad_settings_are_named(block: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        CoverageSettings.from_params(block)
