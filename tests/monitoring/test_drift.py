"""The drift rule on small synthetic data: every statistic is scipy's own, and the rule decides."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from monitoring.drift import (
    PREDICTION,
    PSI_EPSILON,
    DriftSettings,
    judge,
    normalised_wasserstein,
    psi,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _entry(values: FloatArray, categorical: bool, bins: int = 10) -> dict[str, Any]:
    """One profile entry in the spec's format (enough of it for the rule)."""
    present = values[~np.isnan(values)]
    edges = np.unique(np.quantile(present, np.arange(1, bins) / bins))
    entry: dict[str, Any] = {
        "kind": "categorical" if categorical else "continuous",
        "rows": int(values.size),
        "missing_rate": float(np.isnan(values).mean()),
        "min": float(present.min()),
        "max": float(present.max()),
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)),
        "quantile_edges": edges.tolist(),
    }
    if categorical:
        keys, counts = np.unique(present, return_counts=True)
        entry["categories"] = {
            f"{key:g}": int(count) for key, count in zip(keys, counts, strict=True)
        }
    else:
        entry["values"] = np.sort(present).tolist()
    return entry


def _profile(
    columns: dict[str, FloatArray],
    predictions: FloatArray,
    categorical: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "model_version": "test",
        "rows": int(predictions.size),
        "bins": 10,
        "features": {name: _entry(v, name in categorical) for name, v in columns.items()},
        "prediction": _entry(predictions, categorical=False),
    }


def _normal(seed: int, rows: int, shift: float = 0.0) -> FloatArray:
    return np.random.default_rng(seed).normal(shift, 1.0, rows)


def _flags(seed: int, rows: int) -> FloatArray:
    return (np.random.default_rng(seed).random(rows) < 0.3).astype(np.float64)


SETTINGS = DriftSettings(alpha=0.05, min_rows=20)


@pytest.fixture
def reference() -> dict[str, Any]:
    return _profile(
        {"X": _normal(1, 300), "Y": _normal(2, 300), "C": _flags(3, 300)},
        _normal(4, 300),
        categorical=frozenset({"C"}),
    )


def test_ks_and_chi_square_are_scipys_own(reference: dict[str, Any]) -> None:
    window = {"X": _normal(11, 250, 0.2), "Y": _normal(12, 250), "C": _flags(13, 250)}
    predictions = _normal(14, 250)
    verdict = judge(reference, window, predictions, SETTINGS)
    by_name = {result.column: result for result in verdict.columns}
    assert [r.column for r in verdict.columns] == ["X", "Y", "C", PREDICTION]

    for name, values in [("X", window["X"]), ("Y", window["Y"]), (PREDICTION, predictions)]:
        entry = reference["prediction"] if name == PREDICTION else reference["features"][name]
        expected = stats.ks_2samp(values, np.asarray(entry["values"]))
        assert by_name[name].test == "ks"
        assert by_name[name].statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert by_name[name].p_value == pytest.approx(expected.pvalue, abs=1e-12)

    counts = reference["features"]["C"]["categories"]
    table = [[counts["0"], counts["1"]], [np.sum(window["C"] == 0), np.sum(window["C"] == 1)]]
    expected_chi = stats.chi2_contingency(table)
    assert by_name["C"].test == "chi2"
    assert by_name["C"].statistic == pytest.approx(expected_chi.statistic, abs=1e-12)
    assert by_name["C"].p_value == pytest.approx(expected_chi.pvalue, abs=1e-12)


def test_adjusted_p_values_are_benjamini_hochberg(reference: dict[str, Any]) -> None:
    window = {"X": _normal(21, 250, 0.3), "Y": _normal(22, 250, 0.1), "C": _flags(23, 250)}
    verdict = judge(reference, window, _normal(24, 250), SETTINGS)
    raw = [result.p_value for result in verdict.columns]
    expected = stats.false_discovery_control(raw, method="bh")
    assert [r.p_adjusted for r in verdict.columns] == pytest.approx(expected.tolist(), abs=1e-15)
    assert [r.drift for r in verdict.columns] == [bool(p < 0.05) for p in expected]
    assert verdict.drift == any(p < 0.05 for p in expected)


def test_too_small_window_is_reported_not_judged(reference: dict[str, Any]) -> None:
    rows = 199
    window = {"X": _normal(31, rows, 10.0), "Y": _normal(32, rows, 10.0), "C": np.ones(rows)}
    verdict = judge(
        reference, window, _normal(33, rows, 10.0), DriftSettings(alpha=0.05, min_rows=200)
    )
    assert verdict.too_small
    assert not verdict.drift
    assert verdict.columns == ()
    assert verdict.rows == rows
    assert verdict.as_dict()["drifted"] == []


def test_a_large_shift_is_detected_and_no_shift_is_not(reference: dict[str, Any]) -> None:
    same = {"X": _normal(41, 400), "Y": _normal(42, 400), "C": _flags(43, 400)}
    calm = judge(reference, same, _normal(44, 400), SETTINGS)
    assert not calm.too_small
    assert not calm.drift
    assert calm.drifted() == []

    shifted = {**same, "X": same["X"] + 1.0}
    alarm = judge(reference, shifted, _normal(44, 400), SETTINGS)
    assert alarm.drift
    assert alarm.drifted() == ["X"]
    x = alarm.columns[0]
    assert x.psi is not None and x.psi > 0.25
    assert x.wasserstein is not None and x.wasserstein == pytest.approx(1.0, abs=0.2)


def test_psi_on_a_hand_computed_example() -> None:
    edges = [1.0, 2.0]
    reference = np.array([0.5, 1.5, 1.5, 2.5])  # shares 1/4, 1/2, 1/4
    window = np.array([0.5, 0.5, 0.5, 2.5])  # shares 3/4, 0 (-> epsilon), 1/4
    expected = (0.75 - 0.25) * math.log(0.75 / 0.25) + (PSI_EPSILON - 0.5) * math.log(
        PSI_EPSILON / 0.5
    )
    assert psi(edges, reference, window) == pytest.approx(expected, rel=1e-12)
    assert psi(edges, reference, reference) == 0.0


def test_psi_bins_are_closed_on_the_right_and_take_weights() -> None:
    # A value equal to an edge belongs to the bin below it, as in a Prometheus `le` bucket; for a
    # 0/1 column with edge 0 that keeps the zeros and the ones apart.
    reference_values = np.array([0.0, 1.0])
    counts = np.array([90.0, 10.0])
    window = np.array([0.0] * 50 + [1.0] * 50)
    expected = (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    assert psi([0.0], reference_values, window, counts) == pytest.approx(expected, rel=1e-12)


def test_missing_rate_and_out_of_range_share_on_a_hand_made_window() -> None:
    reference_x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, np.nan, np.nan])
    profile = _profile({"X": reference_x}, np.arange(12.0))
    window_x = np.array([np.nan, 0.0, 5.0, 11.0, np.nan, 10.0, 1.0, 3.0, 4.0, 6.0])
    verdict = judge(
        profile, {"X": window_x}, np.arange(10.0), DriftSettings(alpha=0.05, min_rows=10)
    )
    x = verdict.columns[0]
    assert x.rows == 8
    assert x.missing_rate == pytest.approx(0.2)
    assert x.reference_missing_rate == pytest.approx(2 / 12)
    assert x.out_of_range_share == pytest.approx(2 / 8)  # 0 and 11 fall outside [1, 10]


def test_a_column_with_no_values_cannot_be_tested() -> None:
    profile = _profile({"X": _normal(51, 100)}, _normal(52, 100))
    verdict = judge(
        profile, {"X": np.full(50, np.nan)}, _normal(53, 50), DriftSettings(alpha=0.05, min_rows=50)
    )
    x = verdict.columns[0]
    assert (x.rows, x.statistic, x.p_value, x.drift) == (0, 0.0, 1.0, False)
    assert x.psi is None and x.wasserstein is None and x.out_of_range_share is None
    assert x.missing_rate == 1.0


def test_categories_unseen_in_the_reference_count() -> None:
    reference_c = np.array([1.0] * 60 + [2.0] * 40)
    profile = _profile({"C": reference_c}, _normal(61, 100), categorical=frozenset({"C"}))
    window_c = np.array([1.0] * 50 + [2.0] * 30 + [5.0] * 20)
    verdict = judge(
        profile, {"C": window_c}, _normal(62, 100), DriftSettings(alpha=0.05, min_rows=100)
    )
    c = verdict.columns[0]
    expected = stats.chi2_contingency([[60, 40, 0], [50, 30, 20]])
    assert c.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert c.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert c.drift
    assert c.out_of_range_share == pytest.approx(0.2)


def test_a_single_category_on_both_sides_has_p_one() -> None:
    profile = _profile({"C": np.zeros(100)}, _normal(71, 100), categorical=frozenset({"C"}))
    verdict = judge(
        profile, {"C": np.zeros(80)}, _normal(72, 80), DriftSettings(alpha=0.05, min_rows=80)
    )
    c = verdict.columns[0]
    assert (c.statistic, c.p_value, c.drift) == (0.0, 1.0, False)
    assert c.wasserstein == 0.0  # the reference spread is 0


def test_normalised_wasserstein_is_scipys_over_the_reference_std() -> None:
    reference = _normal(81, 200)
    window = _normal(82, 150, 0.5)
    expected = stats.wasserstein_distance(window, reference) / 2.0
    assert normalised_wasserstein(window, reference, 2.0) == pytest.approx(expected, rel=1e-12)
    assert normalised_wasserstein(window, reference, 0.0) == 0.0


def test_the_window_must_match_the_profile(reference: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"lacks profiled feature\(s\) \['C'\]"):
        judge(reference, {"X": _normal(1, 50), "Y": _normal(2, 50)}, _normal(3, 50), SETTINGS)
    bad = {"X": _normal(1, 50), "Y": _normal(2, 49), "C": _flags(3, 50)}
    with pytest.raises(ValueError, match="window column 'Y' has shape"):
        judge(reference, bad, _normal(3, 50), SETTINGS)
    with pytest.raises(ValueError, match="schema_version 2"):
        judge({**reference, "schema_version": 2}, {}, _normal(3, 50), SETTINGS)
    # a column the profile does not list (B, from an old client) is not a model input
    extra = {"X": _normal(1, 50), "Y": _normal(2, 50), "C": _flags(3, 50), "B": np.zeros(50)}
    assert [r.column for r in judge(reference, extra, _normal(3, 50), SETTINGS).columns] == [
        "X",
        "Y",
        "C",
        PREDICTION,
    ]


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, float("nan"), True, "0.05"])
def test_a_bad_alpha_is_named(alpha: Any) -> None:
    with pytest.raises(ValueError, match=r"monitoring\.alpha must lie strictly between 0 and 1"):
        DriftSettings(alpha=alpha, min_rows=200)


@pytest.mark.parametrize("min_rows", [0, -5, 2.5, 0.0, True, "200"])
def test_a_bad_min_rows_is_named(min_rows: Any) -> None:
    with pytest.raises(ValueError, match=r"monitoring\.min_rows must be a whole number >= 1"):
        DriftSettings(alpha=0.05, min_rows=min_rows)


def test_a_whole_float_min_rows_is_read_as_an_int() -> None:
    settings = DriftSettings(alpha=0.05, min_rows=200.0)  # type: ignore[arg-type]
    assert settings.min_rows == 200
    assert type(settings.min_rows) is int


def test_verdict_as_dict_is_plain_data(reference: dict[str, Any]) -> None:
    window = {"X": _normal(91, 100, 2.0), "Y": _normal(92, 100), "C": _flags(93, 100)}
    verdict = judge(reference, window, _normal(94, 100), SETTINGS)
    data = verdict.as_dict()
    assert data["drift"] is True
    assert "X" in data["drifted"]
    assert set(data["columns"][0]) == {
        "column",
        "test",
        "rows",
        "statistic",
        "p_value",
        "p_adjusted",
        "drift",
        "psi",
        "wasserstein",
        "missing_rate",
        "reference_missing_rate",
        "out_of_range_share",
    }


@pytest.mark.parametrize("rows", [5_000, 60_000])
@pytest.mark.parametrize("distinct", [40, None])
def test_a_window_is_judged_from_its_tally_with_scipys_own_figures(
    rows: int, distinct: int | None
) -> None:
    """A large window is measured from its distinct values and their counts (so a day's column
    is never copied and sorted by scipy); every figure equals scipy's on the raw values, for the
    exact p-value (up to 10,000 rows) and the asymptotic one, with repeated values or none."""
    rng = np.random.default_rng(11)
    reference = _normal(1, 405)
    window = rng.normal(0.1, 1.0, rows)
    if distinct is not None:
        window = np.round(window * distinct / 8) / (distinct / 8)  # few distinct values
    window[::13] = np.nan
    profile = _profile({"X": reference}, _normal(4, 405))
    entry = profile["features"]["X"]
    got = judge(profile, {"X": window}, _normal(5, rows), SETTINGS).columns[0]
    present = window[~np.isnan(window)]
    expected = stats.ks_2samp(present, np.asarray(entry["values"]))
    assert got.rows == present.size
    assert got.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert got.p_value == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-300)
    values = np.asarray(entry["values"])
    assert got.psi == pytest.approx(psi(entry["quantile_edges"], values, present), rel=1e-12)
    assert got.wasserstein == pytest.approx(
        normalised_wasserstein(present, values, entry["std"]), rel=1e-9
    )
    outside = (present < entry["min"]) | (present > entry["max"])
    assert got.out_of_range_share == pytest.approx(float(outside.mean()), rel=1e-12)
    assert got.missing_rate == pytest.approx(1 - present.size / rows, rel=1e-12)
