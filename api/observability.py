"""Prometheus metrics and the structured prediction log: what the service tells its operators."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# MEDV is in $1000s and censored at 50, so these buckets span the whole target range.
_PREDICTION_BUCKETS = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)


class Metrics:
    """One registry per app, so several apps (as in tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency by route and status",
            ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.predictions = Histogram(
            "model_prediction_medv", "Predicted MEDV ($1000s)",
            buckets=_PREDICTION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_info = Gauge(
            "model_info", "The served model (1 when loaded)",
            ["model_version", "family"], registry=self.registry,
        )  # fmt: skip
        self.model_loaded = Gauge(
            "model_loaded", "1 when a model is loaded and serving", registry=self.registry
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

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


class PredictionLog:
    """One JSON line per prediction: the raw material for later drift analysis.

    Lines are written straight to the sink, line-buffered, under a lock (batch lines are written
    from a worker thread): the logging module's machinery cost more than the model on /predict.
    """

    def __init__(self, sink: str, sample_rate: float) -> None:
        self.sample_rate = sample_rate
        self._owned = sink not in ("stdout", "stderr")
        self._stream: BinaryIO = (
            open(sink, "ab")  # noqa: SIM115 - closed in close()
            if self._owned
            else (sys.stdout if sink == "stdout" else sys.stderr).buffer
        )
        self._lock = threading.Lock()
        self._random = random.Random()

    def record(
        self,
        *,
        request_id: str,
        route: str,
        model_version: str,
        inputs: Sequence[dict[str, Any]],
        predictions: Sequence[float],
        latency_ms: float,
    ) -> None:
        lines = []
        for row, prediction in zip(inputs, predictions, strict=True):
            if self.sample_rate < 1.0 and self._random.random() >= self.sample_rate:
                continue
            record = {
                "event": "prediction",
                "request_id": request_id,
                "route": route,
                "model_version": model_version,
                "inputs": row,
                "prediction": prediction,
                "latency_ms": round(latency_ms, 3),
            }
            lines.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if lines:
            with self._lock:
                self._stream.write(b"".join(lines))
                self._stream.flush()  # a line is only useful to a log shipper once written

    def close(self) -> None:
        if self._owned:
            self._stream.close()
