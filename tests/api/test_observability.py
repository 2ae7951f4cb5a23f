"""The bulk prediction histogram must expose exactly what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from api.observability import BulkHistogram

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
