"""The reference profile: what live inputs and predictions are compared with.

Built by the export stage from the training split and the model's out-of-fold predictions on it,
and written beside the model card (artifact.PROFILE_NAME). Its format is documented in
docs/monitoring.md; the drift rule reads it in monitoring/drift.py and the API's live metrics take
their histogram buckets from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from artifact import PROFILE_SCHEMA

_DIGITS = 6  # rounding keeps the profile's bytes stable against last-bit noise


def column_profile(values: np.ndarray, categorical: bool, bins: int) -> dict[str, Any]:
    """Summary of one column (NaN = missing): range, quantile bin edges, and its reference sample
    (the sorted values for a continuous column; counts and shares per value for a categorical
    one)."""
    values = np.asarray(values, dtype=np.float64)
    present = np.sort(values[~np.isnan(values)])
    if present.size == 0:
        raise ValueError("a column with no values cannot be a reference")
    inner = np.quantile(present, np.arange(1, bins) / bins)
    summary: dict[str, Any] = {
        "kind": "categorical" if categorical else "continuous",
        "rows": int(values.size),
        "missing_rate": _round(1 - present.size / values.size),
        "min": _round(present[0]),
        "max": _round(present[-1]),
        "p0_5": _round(np.quantile(present, 0.005)),
        "p99_5": _round(np.quantile(present, 0.995)),
        "mean": _round(present.mean()),
        "std": _round(present.std(ddof=1)) if present.size > 1 else 0.0,
        "quantile_edges": sorted({_round(edge) for edge in inner}),
    }
    if categorical:
        levels, counts = np.unique(present, return_counts=True)
        names = [f"{level:g}" for level in levels]
        summary["categories"] = {name: int(n) for name, n in zip(names, counts, strict=True)}
        summary["shares"] = {
            name: _round(n / present.size) for name, n in zip(names, counts, strict=True)
        }
    else:
        summary["values"] = [_round(value) for value in present]
    return summary


def build_profile(
    columns: Mapping[str, np.ndarray],
    categorical: set[str],
    predictions: np.ndarray,
    model_version: str,
    bins: int,
) -> dict[str, Any]:
    """The profile of the model inputs `columns` and the reference `predictions`."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"monitoring.reference_bins must be a whole number >= 2, got {bins!r}")
    return {
        "schema_version": PROFILE_SCHEMA,
        "model_version": model_version,
        "rows": len(predictions),
        "bins": bins,
        "features": {
            name: column_profile(values, name in categorical, bins)
            for name, values in columns.items()
        },
        "prediction": column_profile(predictions, categorical=False, bins=bins),
    }


def _round(value: float) -> float:
    return round(float(value), _DIGITS)
