"""Conformal prediction intervals: calibrated once on out-of-fold residuals, applied to any price.

The method is Mondrian cross-conformal by predicted price. The training split's out-of-fold
predictions are cut at their quantiles into `bins` groups, and each group gets its own half-width:
the conformal quantile (the ceil((n + 1) * level)-th smallest of its n absolute out-of-fold
residuals). A price predicted in a group is served with that group's half-width, so the interval
widens where the model's errors are larger (dear tracts) instead of one width over-covering cheap
tracts and under-covering dear ones. No row is held back from the model: every training row's
residual comes from a model fitted without it.

MEDV is censored at 50.0 ("50 or more"): an upper bound at or above it is served as 50.0 and
marked open-ended, and a price recorded as 50.0 is inside an open-ended interval.

Standard library and numpy only: the pipeline, the service and the reports share this module.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

METHOD = "mondrian-cross-conformal"


class Interval(NamedTuple):
    lower: float
    upper: float
    upper_censored: bool


class Bounds(NamedTuple):
    """The intervals of many predictions, as arrays."""

    lower: np.ndarray
    upper: np.ndarray
    upper_censored: np.ndarray


def check_settings(level: object, bins: object) -> None:
    """intervals.level and intervals.bins as params.yaml may hold them; the error names which."""
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise ValueError(f"intervals.level must be a number between 0 and 1, got {level!r}")
    if not 0 < level < 1:
        raise ValueError(f"intervals.level must lie strictly between 0 and 1, got {level}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"intervals.bins must be a whole number >= 1, got {bins!r}")


def rows_needed(level: float) -> int:
    """The fewest residuals whose conformal quantile at `level` is finite."""
    # rounded first: 0.9 / (1 - 0.9) is 9.000000000000002 in floating point, and 9 rows suffice
    return math.ceil(round(level / (1 - level), 9))


@dataclass(frozen=True)
class Intervals:
    """The calibrated intervals of one model: what the card stores and the service applies."""

    level: float
    edges: tuple[float, ...]  # predicted-price cut points between the groups, ascending
    half_widths: tuple[float, ...]  # one per group, from the cheapest group to the dearest
    upper_limit: float  # the censoring point of the target

    @classmethod
    def calibrate(
        cls,
        predicted: np.ndarray,
        actual: np.ndarray,
        *,
        level: float,
        bins: int,
        upper_limit: float,
    ) -> Intervals:
        """From out-of-fold predictions and the prices they predicted."""
        check_settings(level, bins)
        predicted = np.asarray(predicted, dtype=np.float64)
        residuals = np.abs(np.asarray(actual, dtype=np.float64) - predicted)
        edges = np.quantile(predicted, np.arange(1, bins) / bins) if bins > 1 else np.array([])
        groups = np.searchsorted(edges, predicted, side="right")
        half_widths = []
        for group in range(bins):
            own = np.sort(residuals[groups == group])
            rank = math.ceil((len(own) + 1) * level)
            if rank > len(own):
                raise ValueError(
                    f"intervals.bins={bins} leaves {len(own)} training rows in a group; "
                    f"intervals.level={level} needs at least {rows_needed(level)} per group"
                )
            half_widths.append(float(own[rank - 1]))
        return cls(
            level=float(level),
            edges=tuple(float(edge) for edge in edges),
            half_widths=tuple(half_widths),
            upper_limit=float(upper_limit),
        )

    def one(self, prediction: float) -> Interval:
        """The interval of one prediction (the /predict path: no numpy)."""
        half = self.half_widths[bisect_right(self.edges, prediction)]
        upper = prediction + half
        if upper >= self.upper_limit:
            return Interval(prediction - half, self.upper_limit, True)
        return Interval(prediction - half, upper, False)

    def many(self, predictions: np.ndarray) -> Bounds:
        """The intervals of an array of predictions."""
        predictions = np.asarray(predictions, dtype=np.float64)
        groups = np.searchsorted(np.asarray(self.edges), predictions, side="right")
        half = np.asarray(self.half_widths)[groups]
        upper = predictions + half
        censored = upper >= self.upper_limit
        return Bounds(predictions - half, np.where(censored, self.upper_limit, upper), censored)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "level": self.level,
            "edges": list(self.edges),
            "half_widths": list(self.half_widths),
            "upper_limit": self.upper_limit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intervals:
        if data.get("method") != METHOD:
            raise ValueError(f"intervals method {data.get('method')!r} is not {METHOD!r}")
        edges, half_widths = tuple(data["edges"]), tuple(data["half_widths"])
        if len(half_widths) != len(edges) + 1:
            raise ValueError("intervals need one half-width more than edges")
        return cls(float(data["level"]), edges, half_widths, float(data["upper_limit"]))


def covered(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, upper_censored: np.ndarray
) -> np.ndarray:
    """Whether each price lies in its interval; an open-ended interval has no upper bound."""
    actual = np.asarray(actual, dtype=np.float64)
    inside = (actual >= lower) & ((actual <= upper) | np.asarray(upper_censored, dtype=bool))
    return np.asarray(inside, dtype=bool)


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sensible at 0 and at n successes too)."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    half /= 1 + z * z / trials
    return max(0.0, centre - half), min(1.0, centre + half)
