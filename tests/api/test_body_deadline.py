"""The body deadline (api/middleware.py): one timer per worker cuts off every body still
arriving past its deadline, and leaves alone the work a request does once its body is in."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.middleware import ServiceMiddleware
from api.overload import LoopLag

TIMEOUT = 0.3


def app_with_deadline(after_body: float = 0.0) -> Starlette:
    """An app behind the middleware whose route reads the body, then works `after_body` s."""

    async def echo(request: Request) -> PlainTextResponse:
        body = await request.body()
        await asyncio.sleep(after_body)
        return PlainTextResponse(body)

    app = Starlette(routes=[Route("/predict", echo, methods=["POST"])])
    app.add_middleware(
        ServiceMiddleware, max_body_bytes=10_000, body_timeout=TIMEOUT,
        lag=LoopLag(), shed_lag=0.0, limiter=None,
    )  # fmt: skip
    return app


async def post(app: Any, chunks: list[bytes], gap: float) -> tuple[int, bytes, float]:
    """A POST whose body arrives in `chunks`, `gap` s apart: status, body, seconds taken."""
    pending = list(chunks)
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        if not pending:
            await asyncio.Event().wait()  # the client sends nothing more
        if len(pending) < len(chunks):
            await asyncio.sleep(gap)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    size = str(sum(map(len, chunks))).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        "headers": [(b"content-type", b"application/json"), (b"content-length", size)],
    }  # fmt: skip
    started = time.monotonic()
    await app(scope, receive, send)
    return answer["status"], answer["body"], time.monotonic() - started


def run(scenario: Any) -> Any:
    # in a thread of its own: Playwright's sync API (the browser tests) keeps a loop running here
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario).result()


def test_a_body_still_arriving_at_its_deadline_is_cut_off_with_408() -> None:
    status, body, took = run(post(app_with_deadline(), [b"{", b'"a"', b": 1}"], gap=1.0))
    assert status == 408
    assert orjson.loads(body) == {"detail": f"request body not received within {TIMEOUT:g} s"}
    # not before the deadline, and at most a tick (a tenth of it) after, with room for a slow CI
    assert TIMEOUT <= took < 3 * TIMEOUT


def test_each_body_gets_its_own_deadline() -> None:
    async def two_slow_bodies() -> list[tuple[int, bytes, float]]:
        app = app_with_deadline()
        first = asyncio.create_task(post(app, [b"{", b"}"], gap=10.0))
        await asyncio.sleep(TIMEOUT / 2)
        second = asyncio.create_task(post(app, [b"{", b"}"], gap=10.0))
        return [await first, await second]

    (first_status, _, first_took), (second_status, _, second_took) = run(two_slow_bodies())
    assert first_status == second_status == 408
    assert first_took >= TIMEOUT and second_took >= TIMEOUT  # neither cut off early


def test_the_deadline_covers_the_body_not_the_work_after_it() -> None:
    async def requests_that_work_past_the_deadline() -> list[tuple[int, bytes, float]]:
        app = app_with_deadline(after_body=2 * TIMEOUT)
        return await asyncio.gather(*(post(app, [b"{", b"}"], gap=0.01) for _ in range(20)))

    answers = run(requests_that_work_past_the_deadline())
    assert [(status, body) for status, body, _ in answers] == [(200, b"{}")] * 20


def test_a_new_event_loop_gets_working_deadlines() -> None:
    """Tests (and TestClient) run an app on one event loop after another."""
    app = app_with_deadline()
    for _ in range(2):
        assert run(post(app, [b"{", b"}"], gap=0.01))[:2] == (200, b"{}")
        assert run(post(app, [b"{", b"}"], gap=1.0))[0] == 408
