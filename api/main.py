"""The FastAPI app, built by a factory. The model is loaded in the lifespan, never at import.

Run it with `uvicorn api.main:app` (or `python -m api`); settings come from BOSTON_API_* environment
variables (api/settings.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import multiprocess
from api.dependencies import API_KEY_HEADER, require_api_key
from api.docs import add_offline_docs
from api.middleware import ServiceMiddleware
from api.openapi import openapi
from api.overload import LoopLag
from api.ratelimit import RateLimiter, parse_limits, windows_for
from api.routes import admin, feedback, invocations, predict, service
from api.runtime import GENERATION_FILE, Runtime
from api.schemas import json_safe
from api.settings import Settings, get_settings
from prediction_log import PredictionLog

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    lag = LoopLag()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = multiprocess.start_metrics()
        app.state.metrics = metrics
        rotate = settings.log_rotate
        log = PredictionLog(settings.log_sink, settings.log_sample_rate, rotate)
        sink = settings.feedback_sink
        feedback_log = (
            PredictionLog(sink, 1.0, rotate) if sink and sink != settings.log_sink else log
        )
        runtime = Runtime(settings=settings, metrics=metrics, log=log, feedback_log=feedback_log)
        runtime.load_model()
        if runtime.serving is None:
            logger.error("serving without a model: %s", runtime.reason)
        app.state.runtime = runtime
        runtime.reload_on_hangup()
        tasks = []
        if metrics.directory is not None:
            # several workers: each one's buffered input rows reach the shared tally within a
            # second, and a model reloaded by one of them is reloaded by the others
            runtime.generation = metrics.directory / GENERATION_FILE
            tasks = [
                asyncio.create_task(metrics.flush_every(1.0)),
                asyncio.create_task(runtime.follow(1.0)),
            ]
        try:
            async with lag.watching():
                yield
        finally:
            for task in tasks:
                task.cancel()
            log.close()
            feedback_log.close()
            metrics.close()

    app = FastAPI(
        title="Boston Housing price API",
        version="1.0.0",
        description="Predicts MEDV (median home value, $1000s) with the model the DVC pipeline "
        "exported. The request schema comes from the model card's feature contract.",
        docs_url=None,  # served offline by api.docs
        redoc_url=None,
        lifespan=lifespan,
        # the service reports through its own Prometheus metrics and JSON logs
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    # with a key configured, the client routes declare it as their security scheme; without
    # one, the document shows them open
    keyed = [Security(require_api_key)] if settings.api_key is not None else []
    routers = [
        (predict.router, keyed),
        (invocations.router, keyed),
        (feedback.router, keyed),
        (invocations.probes, []),
        (service.router, []),
        (admin.router, []),
    ]
    for router, dependencies in routers:
        app.include_router(router, dependencies=dependencies)
    add_offline_docs(app)
    limiter = (
        RateLimiter(
            parse_limits(settings.rate_limit),
            windows_for(settings.rate_limit_storage),
            key_header=API_KEY_HEADER if settings.api_key is not None else None,
            routes=[route for router, _ in routers for route in router.routes],
        )
        if settings.rate_limit is not None
        else None
    )
    app.add_middleware(
        ServiceMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        lag=lag,
        shed_lag=settings.shed_lag_ms / 1000,
        limiter=limiter,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    detail = [
        {
            "loc": list(item.get("loc", [])),
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
            **({"input": json_safe(item["input"])} if "input" in item else {}),
        }
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The trace goes to the server log; the client gets the request id to quote, never the trace.
    request_id = getattr(request.state, "request_id", "")
    logger.exception("unhandled error in request %s", request_id)
    return JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)


app = create_app()
