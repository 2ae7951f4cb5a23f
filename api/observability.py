"""Prometheus metrics: what the service tells its operators (the log is prediction_log.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# MEDV is in $1000s and censored at 50, so these buckets span the whole target range.
_PREDICTION_BUCKETS = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)


class Metrics:
    """One registry per app, so several apps (as in tests) never collide.

    With `directory` (see api.multiprocess) this process is one of several workers: every figure
    also lives in a file there, and exposition() sums all the workers' files.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency by route and status",
            ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.predictions = BulkHistogram(
            "model_prediction_medv", "Predicted MEDV ($1000s)", _PREDICTION_BUCKETS,
            self.registry, directory,
        )  # fmt: skip
        self.model_info = Gauge(
            "model_info", "The served model (1 when loaded)",
            ["model_version", "family"], registry=self.registry, multiprocess_mode="livemax",
        )  # fmt: skip
        # across workers: loaded only when every live worker has it
        self.model_loaded = Gauge(
            "model_loaded", "1 when a model is loaded and serving", registry=self.registry,
            multiprocess_mode="livemin",
        )  # fmt: skip
        self.reference_prediction = Gauge(
            "model_reference_prediction_quantile",
            "Quantiles of the reference (out-of-fold) predictions, to compare live ones with",
            ["quantile"], registry=self.registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.inputs: InputMonitor | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def watch_inputs(self, profile: dict[str, Any] | None, inputs: list[str]) -> None:
        """Compare live inputs and predictions with `profile` from now on (None: stop)."""
        if self.inputs is not None:
            self.registry.unregister(self.inputs)
            self.inputs = None
        if profile is None:
            return
        self.inputs = InputMonitor(profile, inputs, self.registry, self.directory)
        reference = np.asarray(profile["prediction"]["values"], dtype=np.float64)
        for quantile in _REFERENCE_QUANTILES:
            self.reference_prediction.labels(str(quantile)).set(np.quantile(reference, quantile))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its media type: this process's figures, or all the
        workers' summed."""
        if self.directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        # the bulk collectors sum every worker's tally themselves
        registry.register(self.predictions)
        if self.inputs is not None:
            registry.register(self.inputs)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    async def flush_every(self, seconds: float) -> None:
        """With several workers, count buffered input rows at least every `seconds`: a scrape
        reaches one worker, and the others' rows would wait for their buffers to fill."""
        while True:
            await asyncio.sleep(seconds)
            if self.inputs is not None:
                self.inputs.flush()

    def close(self) -> None:
        """At shutdown: a stopped worker's gauges leave the sums (its counts stay in them)."""
        if self.directory is not None:
            mark_process_dead(os.getpid(), str(self.directory))  # type: ignore[no-untyped-call]

    def record_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # labels() costs a lock and a tuple build per call; the children are cached instead
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class BulkHistogram(Collector):
    """A Prometheus histogram that takes a whole batch of observations in one numpy pass.

    prometheus_client's Histogram takes a lock per observation, which for a 10,000-row batch holds
    the GIL for milliseconds while the next request waits.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
        directory: Path | None = None,
    ) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = tuple(float(bound) for bound in buckets)
        # one count per bucket, the last one +Inf, then the sum of the observations
        self._tally = Tally(name, len(buckets) + 2, directory)
        self._sum_at = len(buckets) + 1
        self._lock = threading.Lock()
        registry.register(self)

    # bucket i counts bounds[i-1] < value <= bounds[i] (Prometheus' "le"): a left bisection

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)
        counts = self._tally.counts
        with self._lock:
            counts[index] += 1
            counts[self._sum_at] += value

    def observe_many(self, values: Sequence[float]) -> None:
        array = np.asarray(values, dtype=np.float64)
        indices = np.searchsorted(self._bounds, array, side="left")
        counts = np.bincount(indices, minlength=self._sum_at)
        with self._lock:
            self._tally.counts[: self._sum_at] += counts
            self._tally.counts[self._sum_at] += array.sum()

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            figures = self._tally.total().tolist()
        cumulative, total = list(accumulate(figures[: self._sum_at])), figures[self._sum_at]
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation,
            buckets=list(zip(bounds, cumulative, strict=True)), sum_value=total,
        )  # fmt: skip


_REFERENCE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
_PENDING_ROWS = 1024  # single rows buffered before a bulk pass: bounded memory, cheap passes


class InputMonitor(Collector):
    """Live model inputs against the training split's reference profile.

    Per input, a histogram whose buckets are the reference's quantile edges (its categories, for a
    categorical input), so a dashboard sees each bucket's share move away from 1/bins; and counts
    of values outside the reference's observed range and of missing values. A batch costs one
    numpy pass over its matrix; single rows (the /predict hot path) are only buffered, and counted
    in bulk when the buffer fills or /metrics is scraped: a numpy pass per row would cost more than
    the row's prediction.
    """

    def __init__(
        self,
        profile: dict[str, Any],
        inputs: list[str],
        registry: CollectorRegistry,
        directory: Path | None = None,
    ) -> None:
        self._inputs = inputs
        references = [profile["features"][name] for name in inputs]
        self._edges = [_bucket_bounds(reference) for reference in references]
        self._low = np.array([reference["min"] for reference in references])
        self._high = np.array([reference["max"] for reference in references])
        # One searchsorted for all inputs at once: input j is shifted by j * span, where span
        # exceeds every input's whole range, so the shifted inputs' edges never interleave.
        span = 2.0 * (max(np.abs(self._low).max(), np.abs(self._high).max()) + 1.0) + 1.0
        self._offsets = np.arange(len(inputs), dtype=np.float64) * span
        self._shifted = np.concatenate(
            [
                np.asarray(edges) + offset
                for edges, offset in zip(self._edges, self._offsets, strict=True)
            ]
        )
        self._column = np.arange(len(inputs))
        size = sum(len(edges) + 1 for edges in self._edges)  # each input has its +Inf bucket
        # one tally, in slices: the buckets, then per input its sum, out-of-range and missing
        width = len(inputs)
        self._tally = Tally("model_input", size + 3 * width, directory)
        counts = self._tally.counts
        self._buckets = counts[:size]
        self._sums = counts[size : size + width]
        self._outside = counts[size + width : size + 2 * width]
        self._missing = counts[size + 2 * width :]
        self._size, self._width = size, width
        self._pending: list[np.ndarray] = []
        self._lock = threading.Lock()
        registry.register(self)

    def observe_row(self, row: np.ndarray) -> None:
        """Buffer one row (float64, `inputs` order); it is counted with the next bulk pass."""
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= _PENDING_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        """Count the buffered rows now."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            self.observe(np.vstack(pending))

    def observe(self, matrix: np.ndarray) -> None:
        """Count a float64 matrix of rows (columns in `inputs` order, NaN = missing)."""
        missing = np.isnan(matrix)
        present = ~missing
        # Bucket of a value: edges below it in the shifted, concatenated edges, plus one +Inf
        # bucket for every input before its own. Left bisection: Prometheus' le is inclusive.
        position = np.searchsorted(self._shifted, (matrix + self._offsets)[present], side="left")
        bucket = position + np.broadcast_to(self._column, matrix.shape)[present]
        counts = np.bincount(bucket, minlength=self._buckets.size)
        outside = ((matrix < self._low) | (matrix > self._high)).sum(axis=0)
        with self._lock:
            self._buckets += counts
            self._sums += np.where(present, matrix, 0.0).sum(axis=0)
            self._outside += outside
            self._missing += missing.sum(axis=0)

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        self.flush()
        with self._lock:
            figures = self._tally.total().tolist()
        size, width = self._size, self._width
        buckets, sums = figures[:size], figures[size : size + width]
        outside, missing = figures[size + width : size + 2 * width], figures[size + 2 * width :]
        values = HistogramMetricFamily(
            "model_input_value",
            "Live model inputs, bucketed by the reference profile's quantile edges",
            labels=["feature"],
        )
        start = 0
        for name, edges, total in zip(self._inputs, self._edges, sums, strict=True):
            counts = buckets[start : start + len(edges) + 1]
            start += len(edges) + 1
            bounds = [*map(floatToGoString, edges), "+Inf"]
            values.add_metric(
                [name], list(zip(bounds, accumulate(counts), strict=True)), sum_value=total
            )
        yield values
        for metric, documentation, figures in (
            ("model_input_out_of_range", "Live input values outside the reference range", outside),
            ("model_input_missing", "Live input values sent as null or left out", missing),
        ):
            family = CounterMetricFamily(metric, documentation, labels=["feature"])
            for name, count in zip(self._inputs, figures, strict=True):
                family.add_metric([name], count)
            yield family


class Tally:
    """A collector's running figures: a float64 array in memory, or, when several workers share
    /metrics, in a file per worker under `directory`, which total() sums over all the workers.

    float64 counts stay exact up to 2**53; a numpy update of a file-backed array costs what it
    costs in memory (the file is a memory map, on the temp dir's filesystem).
    """

    def __init__(self, name: str, size: int, directory: Path | None) -> None:
        self._pattern, self._size, self._directory = f"{name}_*.tally", size, directory
        self.counts: np.ndarray
        if directory is None:
            self.counts = np.zeros(size)
        else:
            path = directory / f"{name}_{os.getpid()}.tally"
            self.counts = np.memmap(path, dtype=np.float64, mode="w+", shape=(size,))

    def total(self) -> np.ndarray:
        if self._directory is None:
            return self.counts.copy()
        total = np.zeros(self._size)
        for path in self._directory.glob(self._pattern):
            figures = np.fromfile(path, dtype=np.float64)
            if figures.size == self._size:  # another size: a worker serving another model
                total += figures
        return total


def _bucket_bounds(reference: dict[str, Any]) -> list[float]:
    if reference["kind"] == "categorical":
        return sorted(float(level) for level in reference["categories"])
    return [float(edge) for edge in reference["quantile_edges"]]
