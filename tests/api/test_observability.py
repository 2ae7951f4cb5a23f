"""The bulk prediction histogram and the live input histograms must expose exactly what
prometheus_client's own would; out-of-range and missing inputs are counted per feature."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from api.observability import BulkHistogram, InputMonitor

BUCKETS = (5, 10, 50)
# on, just below and just above each bound, plus values beyond the last bound
VALUES = [0.0, 4.999, 5.0, 5.001, 10.0, 10.5, 49.99, 50.0, 50.01, 1e6, -3.0]


def _exposition(observe: str) -> str:
    registry = CollectorRegistry()
    if observe == "reference":
        reference = Histogram("medv", "doc", buckets=BUCKETS, registry=registry)
        for value in VALUES:
            reference.observe(value)
    else:
        bulk = BulkHistogram("medv", "doc", BUCKETS, registry)
        if observe == "one by one":
            for value in VALUES:
                bulk.observe(value)
        else:
            bulk.observe_many(VALUES[:4])
            bulk.observe_many(VALUES[4:])
    # prometheus_client adds a _created sample to its own histograms; compare the rest
    return "\n".join(line for line in generate_latest(registry).decode().splitlines()
                     if "_created" not in line)  # fmt: skip


def test_bulk_histogram_matches_prometheus_client() -> None:
    reference = _exposition("reference")
    assert 'medv_bucket{le="5.0"} 4.0' in reference  # the comparison below is not vacuous
    assert _exposition("one by one") == reference
    assert _exposition("in batches") == reference


# Two inputs: a continuous one with three quantile edges, a categorical one with two levels.
PROFILE = {
    "features": {
        "RM": {"kind": "continuous", "min": 4.0, "max": 8.0, "quantile_edges": [5.5, 6.2, 6.9]},
        "CHAS": {"kind": "categorical", "min": 0.0, "max": 1.0, "categories": {"0": 9, "1": 1}},
    }
}
ROWS = np.array(
    [[4.0, 0.0], [5.5, 1.0], [5.500001, 0.0], [6.2, np.nan], [7.0, 1.0], [9.5, 0.0], [np.nan, 0.0],
     [3.0, 1.0], [6.9, 0.0]]
)  # fmt: skip


def _input_lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith("model_input_value_")]


def _input_exposition(observe: str) -> list[str]:
    if observe == "reference":
        # prometheus_client fixes one bucket set per metric, so one registry per feature
        lines = []
        for column, name, buckets in ((0, "RM", (5.5, 6.2, 6.9)), (1, "CHAS", (0.0, 1.0))):
            registry = CollectorRegistry()
            histogram = Histogram(
                "model_input_value", "doc", ["feature"], buckets=buckets, registry=registry
            )
            for value in ROWS[:, column]:
                if not np.isnan(value):
                    histogram.labels(name).observe(value)
            lines += [line for line in _input_lines(registry) if "_created" not in line]
        return sorted(lines)
    registry = CollectorRegistry()
    monitor = InputMonitor(PROFILE, ["RM", "CHAS"], registry)
    if observe == "row by row":
        for row in ROWS:
            monitor.observe_row(row)  # buffered, counted when collected
    else:
        monitor.observe(ROWS[:4])
        monitor.observe(ROWS[4:])
    return sorted(_input_lines(registry))


def test_input_histograms_match_prometheus_client_per_feature() -> None:
    reference = _input_exposition("reference")
    assert 'model_input_value_bucket{feature="RM",le="5.5"} 3.0' in reference
    assert 'model_input_value_bucket{feature="CHAS",le="0.0"} 5.0' in reference
    for how in ("row by row", "in batches"):
        assert _input_exposition(how) == reference, how


def test_out_of_range_and_missing_values_are_counted_per_feature() -> None:
    registry = CollectorRegistry()
    InputMonitor(PROFILE, ["RM", "CHAS"], registry).observe(ROWS)
    exposition = generate_latest(registry).decode()
    assert 'model_input_out_of_range_total{feature="RM"} 2.0' in exposition  # 9.5 and 3.0
    assert 'model_input_out_of_range_total{feature="CHAS"} 0.0' in exposition
    assert 'model_input_missing_total{feature="RM"} 1.0' in exposition
    assert 'model_input_missing_total{feature="CHAS"} 1.0' in exposition
