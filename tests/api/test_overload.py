"""Load shedding by event-loop lag: a worker far behind answers 503 with Retry-After at once, and
its health probe and scrape still get through."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.middleware import ServiceMiddleware
from api.overload import LoopLag
from api.schemas import FIRST_TRACT
from tests.conftest import running_api


def app_behind(lag: LoopLag, shed_lag: float) -> Starlette:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route(path, ok, methods=["GET", "POST"]) for path in ("/predict", "/health")]
    app = Starlette(routes=routes)
    app.add_middleware(
        ServiceMiddleware, max_body_bytes=10_000, body_timeout=5.0,
        lag=lag, shed_lag=shed_lag, limiter=None,
    )  # fmt: skip
    return app


def test_past_the_lag_limit_requests_are_shed_with_retry_after() -> None:
    lag = LoopLag()
    client = TestClient(app_behind(lag, shed_lag=0.25))
    assert client.post("/predict").status_code == 200
    lag.seconds = 0.4  # as the watch would record a loop running 400 ms late
    shed = client.post("/predict")
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.json() == {"detail": "overloaded: requests wait 400 ms to start; retry after 1 s"}
    assert "connection" not in shed.headers  # the connection is kept: a retry costs no handshake
    assert client.get("/health").status_code == 200  # a busy worker is not a dead one
    lag.seconds = 0.1
    assert client.post("/predict").status_code == 200


def test_a_limit_of_zero_never_sheds() -> None:
    lag = LoopLag()
    lag.seconds = 10.0
    assert TestClient(app_behind(lag, shed_lag=0.0)).post("/predict").status_code == 200


def test_the_watch_measures_a_blocked_loop() -> None:
    lag = LoopLag()

    async def block_then_read() -> tuple[float, float]:
        async with lag.watching():
            await asyncio.sleep(0.05)  # the watch is running
            threading.Event().wait(0.3)  # a stall: one handler holds the loop for 300 ms
            await asyncio.sleep(0.001)  # the watch wakes, late (its next wake is 5 ms on)
            after_a_stall = lag.seconds
            for _ in range(5):  # a queue: handler after handler, each holding the loop 200 ms
                threading.Event().wait(0.2)
                await asyncio.sleep(0)  # one turn of the loop, in which the watch wakes late
            return after_a_stall, lag.seconds

    # in a thread of its own: Playwright's sync API (the browser tests) keeps a loop running here
    with ThreadPoolExecutor(max_workers=1) as pool:
        after_a_stall, behind_a_queue = pool.submit(asyncio.run, block_then_read()).result()
    assert after_a_stall < 0.1  # one late wake is not a queue
    assert 0.15 < behind_a_queue < 1.0
    assert lag.seconds == 0.0  # not watching: no figure


@pytest.mark.e2e
def test_a_real_worker_behind_its_big_batches_sheds_small_requests(
    model_dir: Path, tmp_path: Path
) -> None:
    """10,000-row batches hold the loop while they are parsed; with a 1 ms limit, /predict
    requests arriving meanwhile are shed, and every answer is a 200 or a 503 with Retry-After."""
    rows = {"rows": [FIRST_TRACT] * 10_000}
    statuses: dict[int, int] = {}
    without_retry_after = 0
    with running_api(
        model_dir, tmp_path / "log.jsonl", shed_lag_ms="1", log_sample_rate="0"
    ) as url:
        stop = threading.Event()

        def batches() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    client.post(f"{url}/predict/batch", json=rows)

        thread = threading.Thread(target=batches)
        thread.start()
        try:
            with httpx.Client(timeout=10) as client:
                for _ in range(400):
                    response = client.post(f"{url}/predict", json=FIRST_TRACT)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 503:
                        without_retry_after += "retry-after" not in response.headers
                    assert client.get(f"{url}/health").status_code == 200
        finally:
            stop.set()
            thread.join(timeout=60)
    assert set(statuses) == {200, 503}, statuses
    assert without_retry_after == 0
