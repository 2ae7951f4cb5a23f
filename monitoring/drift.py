"""The drift rule: is a window of served inputs and predictions unlike the training reference?

Each profiled model input and the prediction get one test (two-sample KS for continuous columns,
chi-square contingency for categorical ones) and Benjamini-Hochberg adjusts the p-values over all
of them, so that testing a dozen columns does not raise an alarm in every other window by chance.
PSI, the normalised Wasserstein distance, missing rates and the out-of-range share say how much and
where; they are reported, never the trigger. Pure functions: the caller reads the profile and the
window, so the rule can be tested and benchmarked without files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from artifact import PROFILE_SCHEMA

FloatArray = npt.NDArray[np.float64]
Test = Literal["ks", "chi2"]

# The name the prediction's result goes by, next to the feature names.
PREDICTION = "prediction"
# Stands in for an empty bin's share, so that PSI stays finite (the spec's epsilon).
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class DriftSettings:
    """The rule's two knobs, fed from params.yaml's `monitoring:` block; checked on creation."""

    alpha: float
    min_rows: int

    def __post_init__(self) -> None:
        alpha: object = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 < float(alpha) < 1:
            raise ValueError(f"monitoring.alpha must lie strictly between 0 and 1, got {alpha!r}")
        rows: object = self.min_rows
        # 200.0 is a whole number too (a YAML or JSON writer may produce it); 2.5 and True are not
        if isinstance(rows, float) and rows.is_integer():
            rows = int(rows)
        if isinstance(rows, bool) or not isinstance(rows, Integral) or int(rows) < 1:
            raise ValueError(
                f"monitoring.min_rows must be a whole number >= 1, got {self.min_rows!r}"
            )
        object.__setattr__(self, "min_rows", int(rows))


@dataclass(frozen=True)
class ColumnResult:
    """One column's test and severity figures; `drift` comes from `p_adjusted` alone.

    `rows` counts the window's non-missing values the test saw. When there are none (or the
    reference has none) nothing can be tested: statistic 0, p-value 1, and psi, wasserstein and
    out_of_range_share are None; the missing rate then tells the story.
    """

    column: str
    test: Test
    rows: int
    statistic: float
    p_value: float
    p_adjusted: float
    drift: bool
    psi: float | None
    wasserstein: float | None
    missing_rate: float
    reference_missing_rate: float
    out_of_range_share: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The window's verdict. A too-small window is reported with no columns: it is never judged."""

    rows: int
    too_small: bool
    drift: bool
    columns: tuple[ColumnResult, ...]

    def drifted(self) -> list[str]:
        """The columns whose adjusted p-value fell below alpha, in profile order."""
        return [result.column for result in self.columns if result.drift]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "too_small": self.too_small,
            "drift": self.drift,
            "drifted": self.drifted(),
            "columns": [result.as_dict() for result in self.columns],
        }


@dataclass(frozen=True)
class _Measured:
    """A column's figures before the p-values are adjusted across columns."""

    column: str
    test: Test
    rows: int
    statistic: float
    p_value: float
    psi: float | None
    wasserstein: float | None
    missing_rate: float
    reference_missing_rate: float
    out_of_range_share: float | None


def psi(
    edges: Sequence[float] | FloatArray,
    reference: FloatArray,
    window: FloatArray,
    reference_weights: FloatArray | None = None,
    window_weights: FloatArray | None = None,
) -> float:
    """Population stability index over the bins (-inf, e1], (e1, e2], ..., (ek, +inf).

    Bins are closed on the right like Prometheus' `le` buckets, which use the same edges, and so
    that a categorical value that is itself an edge keeps a bin of its own. The weights carry
    counts (a categorical reference's, a tallied window's). Empty bins get the share PSI_EPSILON.
    """
    bounds = np.asarray(edges, dtype=np.float64)
    bins = bounds.size + 1
    expected = np.bincount(
        np.searchsorted(bounds, reference, side="left"), weights=reference_weights, minlength=bins
    ).astype(np.float64)
    actual = np.bincount(
        np.searchsorted(bounds, window, side="left"), weights=window_weights, minlength=bins
    ).astype(np.float64)
    expected_share = np.where(expected == 0, PSI_EPSILON, expected / expected.sum())
    actual_share = np.where(actual == 0, PSI_EPSILON, actual / actual.sum())
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def normalised_wasserstein(
    window: FloatArray,
    reference: FloatArray,
    reference_std: float,
    reference_weights: FloatArray | None = None,
    window_weights: FloatArray | None = None,
) -> float:
    """Wasserstein distance in reference standard deviations (0 when the reference is constant).

    Dividing by the spread makes columns of different units comparable on one dashboard.
    """
    if not np.isfinite(reference_std) or reference_std == 0:
        return 0.0
    distance = stats.wasserstein_distance(
        window, reference, u_weights=window_weights, v_weights=reference_weights
    )
    return float(distance) / float(reference_std)


# Up to this many values in the larger sample scipy's ks_2samp computes the exact p-value; beyond
# it, Smirnov's asymptotic one (scipy's MAX_AUTO_N), which needs only the statistic and the sizes.
_KS_EXACT_MAX = 10_000


@dataclass(frozen=True)
class _Tally:
    """A column's present values as its distinct values (ascending) and how often each occurs.

    A day's window holds millions of rows but few distinct values per column, and scipy's tests
    copy and sort whatever they are given: every figure is computed from the tally instead, with
    the same result as from the raw values.
    """

    values: FloatArray
    counts: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def of(cls, column: FloatArray) -> _Tally:
        ordered = np.sort(column)  # NaN sorts last
        present = ordered[: ordered.size - int(np.count_nonzero(np.isnan(ordered)))]
        if present.size == 0:
            return cls(np.empty(0), np.empty(0, dtype=np.int64))
        starts = np.concatenate(([0], np.flatnonzero(present[1:] != present[:-1]) + 1))
        counts = np.diff(np.append(starts, present.size)).astype(np.int64)
        return cls(present[starts], counts)


def _ks(window: _Tally, reference: FloatArray) -> tuple[float, float]:
    """scipy's two-sided ks_2samp of the window against the reference, from the window's tally."""
    if max(window.size, reference.size) <= _KS_EXACT_MAX:
        result = stats.ks_2samp(np.repeat(window.values, window.counts), reference)
        return float(result.statistic), float(result.pvalue)
    reference = np.sort(reference)
    points = np.union1d(window.values, reference)
    # the empirical CDFs at every value either sample holds, as ks_2samp evaluates them
    below = np.searchsorted(window.values, points, side="right")
    window_cdf = np.concatenate(([0], np.cumsum(window.counts)))[below] / window.size
    reference_cdf = np.searchsorted(reference, points, side="right") / reference.size
    statistic = float(np.max(np.abs(window_cdf - reference_cdf)))
    larger, smaller = sorted([float(window.size), float(reference.size)], reverse=True)
    effective = larger * smaller / (larger + smaller)
    p_value = float(np.clip(stats.kstwo.sf(statistic, np.round(effective)), 0, 1))
    return statistic, p_value


def _category_counts(window: _Tally) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Counts per category, the values read the way the profile writes its keys ("%g")."""
    keys = np.array([float(f"{value:g}") for value in window.values], dtype=np.float64)
    categories, which = np.unique(keys, return_inverse=True)
    return categories, np.bincount(which, weights=window.counts).astype(np.int64)


def _chi_square(
    reference_values: FloatArray, reference_counts: FloatArray, window: _Tally
) -> tuple[float, float]:
    """Chi-square contingency of reference vs window counts over the union of categories."""
    window_values, window_counts = _category_counts(window)
    categories = np.union1d(reference_values, window_values)
    table = np.zeros((2, categories.size), dtype=np.float64)
    table[0, np.searchsorted(categories, reference_values)] = reference_counts
    table[1, np.searchsorted(categories, window_values)] = window_counts
    # a category counted zero times on both sides would make an expected frequency of zero
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        # one category on both sides: the shares cannot differ
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _measure(column: str, reference: Mapping[str, Any], values: FloatArray) -> _Measured:
    """One column's test, severity and data-quality figures against its profile entry."""
    window = _Tally.of(values)
    counts = window.counts.astype(np.float64)
    missing_rate = float(1.0 - window.size / values.size)
    kind = reference.get("kind")
    weights: FloatArray | None
    test: Test
    if kind == "continuous":
        test = "ks"
        reference_values = np.asarray(reference["values"], dtype=np.float64)
        weights = None
    elif kind == "categorical":
        test = "chi2"
        categories: Mapping[str, int] = reference["categories"]
        reference_values = np.array([float(key) for key in categories], dtype=np.float64)
        weights = np.array(list(categories.values()), dtype=np.float64)
        order = np.argsort(reference_values)
        reference_values, weights = reference_values[order], weights[order]
    else:
        raise ValueError(
            f"reference profile: column {column!r} has kind {kind!r}; "
            "expected 'continuous' or 'categorical'"
        )
    reference_missing_rate = float(reference["missing_rate"])
    if window.size == 0 or reference_values.size == 0:
        return _Measured(
            column, test, 0, 0.0, 1.0, None, None, missing_rate, reference_missing_rate, None
        )
    if test == "ks":
        statistic, p_value = _ks(window, reference_values)
    else:
        assert weights is not None  # set with the categorical reference above
        statistic, p_value = _chi_square(reference_values, weights, window)
    outside = (window.values < float(reference["min"])) | (window.values > float(reference["max"]))
    return _Measured(
        column=column,
        test=test,
        rows=window.size,
        statistic=statistic,
        p_value=p_value,
        psi=psi(reference["quantile_edges"], reference_values, window.values, weights, counts),
        wasserstein=normalised_wasserstein(
            window.values, reference_values, float(reference["std"]), weights, counts
        ),
        missing_rate=missing_rate,
        reference_missing_rate=reference_missing_rate,
        out_of_range_share=int(window.counts[outside].sum()) / window.size,
    )


def _check_schema(profile: Mapping[str, Any]) -> None:
    version = profile.get("schema_version")
    if version != PROFILE_SCHEMA:
        raise ValueError(
            f"reference profile has schema_version {version!r}; this rule reads {PROFILE_SCHEMA}"
        )


def _as_column(name: str, values: object, rows: int) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (rows,):
        raise ValueError(
            f"window column {name!r} has shape {array.shape}; "
            f"expected ({rows},) like the predictions"
        )
    return array


def judge(
    profile: Mapping[str, Any],
    window: Mapping[str, FloatArray],
    predictions: FloatArray,
    settings: DriftSettings,
) -> Verdict:
    """Apply the drift rule to one window.

    `window` maps every profiled feature to a float array (NaN = missing) as long as
    `predictions`; columns the profile does not list (B, sent by old clients) are not model
    inputs and are ignored.
    """
    _check_schema(profile)
    features: Mapping[str, Mapping[str, Any]] = profile["features"]
    absent = [name for name in features if name not in window]
    if absent:
        raise ValueError(f"window lacks profiled feature(s) {absent}")
    predicted = np.asarray(predictions, dtype=np.float64)
    if predicted.ndim != 1:
        raise ValueError(f"predictions must be one-dimensional, got shape {predicted.shape}")
    rows = int(predicted.size)
    columns = {name: _as_column(name, window[name], rows) for name in features}
    return judge_columns(
        profile, lambda name: predicted if name == PREDICTION else columns[name], rows, settings
    )


def judge_columns(
    profile: Mapping[str, Any],
    column: Callable[[str], FloatArray],
    rows: int,
    settings: DriftSettings,
) -> Verdict:
    """judge's rule with the window's columns fetched one at a time by name (each profiled
    feature, then PREDICTION), each `rows` long: a reader of a day's log then holds one column
    of millions of rows in memory, never all of them."""
    _check_schema(profile)
    if rows < settings.min_rows:
        return Verdict(rows=rows, too_small=True, drift=False, columns=())
    references = {**profile["features"], PREDICTION: profile["prediction"]}
    measured = [_measure(name, reference, column(name)) for name, reference in references.items()]
    adjusted = stats.false_discovery_control([m.p_value for m in measured], method="bh")
    results = tuple(
        ColumnResult(
            column=m.column,
            test=m.test,
            rows=m.rows,
            statistic=m.statistic,
            p_value=m.p_value,
            p_adjusted=float(p),
            drift=bool(p < settings.alpha),
            psi=m.psi,
            wasserstein=m.wasserstein,
            missing_rate=m.missing_rate,
            reference_missing_rate=m.reference_missing_rate,
            out_of_range_share=m.out_of_range_share,
        )
        for m, p in zip(measured, adjusted, strict=True)
    )
    return Verdict(
        rows=rows,
        too_small=False,
        drift=any(result.drift for result in results),
        columns=results,
    )
