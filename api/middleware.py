"""Pure ASGI middleware (no per-request task overhead): request ids, the body cap, HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability import Metrics

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class ServiceMiddleware:
    """Tags each request with an id, caps its body as it streams in, and counts it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        try:
            if _declared_length(scope) > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except BodyTooLarge:
            if response_started:
                raise
            await _too_large(send_with_id, self.max_body_bytes)
        finally:
            route = scope.get("route")
            labels = (getattr(route, "path", "unmatched"), scope["method"], str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    def _capped(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return capped_receive


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            candidate = str(value.decode("latin-1"))
            if _ACCEPTABLE_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _too_large(send: Any, limit: int) -> None:
    body = b'{"detail":"request body exceeds %d bytes"}' % limit
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
