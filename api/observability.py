"""Prometheus metrics and the structured prediction log: what the service tells its operators."""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Sequence
from typing import Any

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


class PredictionLog:
    """One JSON line per prediction: the raw material for later drift analysis."""

    def __init__(self, sink: str, sample_rate: float, logger_name: str) -> None:
        self.sample_rate = sample_rate
        self._logger = logging.getLogger(logger_name)
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self.close()  # a second app in the same process replaces, not duplicates, the handler
        handler: logging.Handler
        if sink in ("stdout", "stderr"):
            handler = logging.StreamHandler(sys.stdout if sink == "stdout" else sys.stderr)
        else:
            handler = logging.FileHandler(sink, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(handler)
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
        for row, prediction in zip(inputs, predictions, strict=True):
            if self.sample_rate < 1.0 and self._random.random() >= self.sample_rate:
                continue
            self._logger.info(
                json.dumps(
                    {
                        "event": "prediction",
                        "request_id": request_id,
                        "route": route,
                        "model_version": model_version,
                        "inputs": row,
                        "prediction": prediction,
                        "latency_ms": round(latency_ms, 3),
                    },
                    separators=(",", ":"),
                )
            )

    def close(self) -> None:
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)
            handler.close()
