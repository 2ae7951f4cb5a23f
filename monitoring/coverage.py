"""Realised coverage of the served prediction intervals, and a verdict that survives repeated looks.

A labelled prediction served with an interval either covers its label or misses it
(conformal.covered: an open-ended upper bound covers a price recorded as 50.0). Per window the
report shows the share covered with its 95% Wilson interval beside the nominal coverage (the mean
of the rows' levels).

The verdict is a sequential test per model version, over its labelled rows in the order their
labels arrived. The null hypothesis is that every interval misses with probability at most
1 - level (its own level). A test martingale bets against it: for an alternative miss rate
q = (1 - level) + d, each label multiplies the wealth by q / (1 - level) on a miss and by
(1 - q) / level on a cover, a factor whose expectation under the null is at most 1. The equally
weighted mixture over the increments d (params.yaml monitoring.coverage_alternatives) is again a
nonnegative supermartingale starting at 1, so by Ville's inequality the chance that it EVER
reaches 1 / alpha is at most alpha, however often the report is run over the growing log. The
alarm is raised once its running maximum has reached 1 / alpha, and stays raised: a later run
reads the same labels in the same order, then more. A fresh binomial test at every run would
instead reach its 5% many times over (studies/coverage_calibration.py measures both).

The test is one-sided: intervals wider than they need be (over-coverage) are not an alarm.
Standard library, numpy and conformal.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformal import wilson

# A wealth beyond e^700 is past any threshold and would overflow a float; reported capped.
_LOG_CAP = 700.0


@dataclass(frozen=True)
class CoverageSettings:
    """The sequential test's knobs (params.yaml monitoring.coverage_alpha and
    monitoring.coverage_alternatives)."""

    alpha: float  # the chance of ever alarming while the intervals cover as promised
    alternatives: tuple[float, ...]  # miss-rate increments over 1 - level the mixture bets on

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(
                f"monitoring.coverage_alpha must lie strictly between 0 and 1, got {self.alpha!r}"
            )
        if not self.alternatives or not all(0 < d < 1 for d in self.alternatives):
            raise ValueError(
                "monitoring.coverage_alternatives must be a non-empty list of miss-rate "
                f"increments strictly between 0 and 1, got {list(self.alternatives)!r}"
            )

    @classmethod
    def from_params(cls, block: dict[str, Any]) -> CoverageSettings:
        """From params.yaml's `monitoring` block."""
        missing = [
            f"monitoring.{key}"
            for key in ("coverage_alpha", "coverage_alternatives")
            if key not in block
        ]
        if missing:
            raise ValueError(f"params.yaml lacks {', '.join(missing)}")
        alternatives = block["coverage_alternatives"]
        if not isinstance(alternatives, list) or not all(
            isinstance(d, int | float) and not isinstance(d, bool) for d in alternatives
        ):
            raise ValueError(
                f"monitoring.coverage_alternatives must be a list of numbers, got {alternatives!r}"
            )
        alpha = block["coverage_alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValueError(f"monitoring.coverage_alpha must be a number, got {alpha!r}")
        return cls(float(alpha), tuple(float(d) for d in alternatives))


def log_wealth(missed: np.ndarray, levels: np.ndarray, settings: CoverageSettings) -> np.ndarray:
    """The natural log of the mixture martingale after each label (its value before any is 1).

    `missed[i]` says whether the i-th label fell outside its interval, `levels[i]` the level that
    interval was served at. An alternative with no room above 1 - level (q >= 1) does not bet on
    that row: its factor is 1.
    """
    missed = np.asarray(missed, dtype=bool)
    null_miss = 1.0 - np.asarray(levels, dtype=np.float64)
    per_alternative = []
    for increment in settings.alternatives:
        alternative = null_miss + increment
        bets = alternative < 1.0
        safe = np.where(bets, alternative, 0.5)
        factor = np.where(
            missed, np.log(safe / null_miss), np.log((1.0 - safe) / (1.0 - null_miss))
        )
        per_alternative.append(np.cumsum(np.where(bets, factor, 0.0)))
    weight = -math.log(len(settings.alternatives))
    mixed: np.ndarray = np.logaddexp.reduce(np.stack(per_alternative), axis=0) + weight
    return mixed


@dataclass(frozen=True)
class CoverageVerdict:
    """One model version's labelled intervals: their coverage and the sequential test's state."""

    labels: int
    covered: int
    nominal: float  # the mean level: the coverage expected while the intervals are honest
    log_wealth: float  # after the last label
    max_log_wealth: float  # the running maximum: what the alarm is judged on
    alarm_at_label: int | None  # the label (1-based, in arrival order) that raised the alarm
    threshold: float  # 1 / alpha

    @property
    def alarm(self) -> bool:
        return self.alarm_at_label is not None

    @property
    def coverage(self) -> float:
        return self.covered / self.labels if self.labels else float("nan")

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson(self.covered, self.labels)
        return {
            "labels": self.labels,
            "covered": self.covered,
            "coverage": round(self.coverage, 4),
            "coverage_ci95": [round(low, 4), round(high, 4)],
            "nominal_coverage": round(self.nominal, 4),
            "e_value": _capped(self.log_wealth),
            "max_e_value": _capped(self.max_log_wealth),
            "threshold": self.threshold,
            "alarm": self.alarm,
            "alarm_at_label": self.alarm_at_label,
        }


def sequential_verdict(
    missed: np.ndarray, levels: np.ndarray, settings: CoverageSettings
) -> CoverageVerdict:
    """The test over one model version's labels, in arrival order (at least one label)."""
    missed = np.asarray(missed, dtype=bool)
    path = log_wealth(missed, levels, settings)
    reached = np.flatnonzero(path >= math.log(1 / settings.alpha))
    return CoverageVerdict(
        labels=len(missed),
        covered=int(np.sum(~missed)),
        nominal=float(np.mean(levels)),
        log_wealth=float(path[-1]),
        max_log_wealth=max(0.0, float(np.max(path))),
        alarm_at_label=int(reached[0]) + 1 if reached.size else None,
        threshold=1 / settings.alpha,
    )


def window_coverage(covered: np.ndarray, levels: np.ndarray) -> dict[str, Any]:
    """A window's labelled intervals: the share covered, its Wilson interval, the nominal."""
    hits, rows = int(np.sum(covered)), len(covered)
    low, high = wilson(hits, rows)
    return {
        "rows": rows,
        "covered": hits,
        "coverage": round(hits / rows, 4),
        "coverage_ci95": [round(low, 4), round(high, 4)],
        "nominal_coverage": round(float(np.mean(levels)), 4),
    }


def _capped(log_value: float) -> float:
    return float(math.exp(min(log_value, _LOG_CAP)))
