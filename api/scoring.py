"""What every prediction route does with a validated body: score it, answer, and account for it
(Prometheus figures, the prediction log, the answered-requests memory that /feedback consults)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import numpy as np
from fastapi import BackgroundTasks, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from api.dependencies import RuntimeDep, ServingDep
from api.runtime import Runtime, Serving
from api.schemas import Row
from conformal import Bounds, Interval

_T = TypeVar("_T")


def validated(
    schema: TypeAdapter[_T], data: Any, prefix: tuple[str | int, ...] = ("body",), drop: int = 0
) -> _T:
    """`data` checked by a card-built schema; a 422 whose locations start with `prefix` (after
    dropping the schema's own first `drop` items)."""
    try:
        return schema.validate_python(data)
    except ValidationError as error:
        raise RequestValidationError(errors(error, prefix, drop)) from None


def errors(
    error: ValidationError, prefix: tuple[str | int, ...], drop: int = 0
) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *item["loc"][drop:]], "msg": item["msg"], "type": item["type"],
         "input": item.get("input")}
        for item in error.errors(include_url=False, include_context=False)
    ]  # fmt: skip


def invalid(loc: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": list(loc), "msg": msg, "type": kind}])


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started`: the latency the prediction log records."""
    return (time.perf_counter() - started) * 1000


def account_one(
    request: Request, runtime: Runtime, current: Serving, row: np.ndarray, values: Row,
    prediction: float, bounds: Interval | None, elapsed_ms: float,
) -> None:  # fmt: skip
    """Count and log one /predict answer, with its interval when the model has one."""
    metrics = runtime.metrics
    metrics.predictions.observe(prediction)
    if metrics.inputs is not None:
        metrics.inputs.observe_row(row)
    request_id: str = request.state.request_id  # set by the service middleware
    version = current.model.version
    runtime.log.record(
        request_id=request_id, route="/predict", model_version=version,
        inputs=[values], predictions=[prediction], latency_ms=elapsed_ms,
        intervals=None if bounds is None else [bounds], level=_level(current),
    )  # fmt: skip
    runtime.answered.remember(request_id, version, 1)


def _level(current: Serving) -> float | None:
    calibration = current.model.intervals
    return None if calibration is None else calibration.level


@dataclass(frozen=True)
class BatchScoring:
    """What a batch route needs to score a validated matrix and account for it."""

    request: Request
    background: BackgroundTasks
    runtime: Runtime
    current: Serving

    async def predict(
        self, matrix: np.ndarray, rows: Sequence[Row], started: float, *, route: str
    ) -> Scored:
        """Predictions for a validated matrix, in order, with their intervals when the model has
        them. A large batch would hold the event loop, so it is scored in a worker thread
        (/health stays live); its thousands of observations and log lines are written after
        the answer is sent."""
        model = self.current.model
        scored: np.ndarray = await anyio.to_thread.run_sync(model.predict, matrix)
        predictions: list[float] = scored.tolist()
        calibration = model.intervals
        bounds = calibration.many(scored) if calibration is not None else None
        level = _level(self.current)
        latency_ms = elapsed_ms(started)
        request_id: str = self.request.state.request_id
        metrics, later = self.runtime.metrics, self.background
        later.add_task(metrics.predictions.observe_many, predictions)
        if metrics.inputs is not None:
            later.add_task(metrics.inputs.observe, matrix)
        later.add_task(
            _log_batch, self.runtime, request_id=request_id, route=route,
            model_version=model.version, inputs=rows, predictions=predictions,
            latency_ms=latency_ms, bounds=bounds, level=level,
        )  # fmt: skip
        self.runtime.answered.remember(request_id, model.version, len(predictions))
        return Scored(predictions, bounds, level)


@dataclass(frozen=True)
class Scored:
    """A batch's predictions, and their intervals (None when the model has no calibration)."""

    predictions: list[float]
    bounds: Bounds | None
    level: float | None

    def intervals(self) -> list[dict[str, Any]] | None:
        """The intervals as the answer's objects, one per row."""
        if self.bounds is None:
            return None
        lower, upper, censored = (values.tolist() for values in self.bounds)
        return [
            {"lower": low, "upper": high, "level": self.level, "upper_censored": open_ended}
            for low, high, open_ended in zip(lower, upper, censored, strict=True)
        ]


def _log_batch(
    runtime: Runtime, *, bounds: Bounds | None, level: float | None, **record: Any
) -> None:
    """The batch's log lines, written after the answer: its intervals are built here too."""
    if bounds is None:
        runtime.log.record(**record)
        return
    lower, upper, censored = (values.tolist() for values in bounds)
    intervals = list(map(Interval, lower, upper, censored))
    runtime.log.record(**record, intervals=intervals, level=level)


def batch_scoring(
    request: Request,
    background: BackgroundTasks,
    runtime: RuntimeDep,
    current: ServingDep,
) -> BatchScoring:
    return BatchScoring(request, background, runtime, current)


BatchScoringDep = Annotated[BatchScoring, Depends(batch_scoring)]
