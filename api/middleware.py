"""Pure ASGI middleware (no per-request task overhead): request ids, the body cap, HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability import Metrics

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
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
        request_id, declared_length = _read_headers(scope)
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
                    (_REQUEST_ID_BYTES, request_id.encode()),
                ]
            await send(message)

        try:
            if declared_length is not None and declared_length > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes)
            elif declared_length is not None:
                # the server reads exactly Content-Length bytes, so the check above suffices
                await self.app(scope, receive, send_with_id)
            else:  # chunked: only counting the bytes as they arrive can enforce the cap
                await self.app(scope, self._capped(receive), send_with_id)
        except BodyTooLarge:
            if response_started:
                raise
            await _too_large(send_with_id, self.max_body_bytes)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.record_request(
                route, scope["method"], status, time.perf_counter() - started
            )

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


def _read_headers(scope: Scope) -> tuple[str, int | None]:
    """The request id to use (the client's, when it is safe to echo) and the declared length."""
    request_id, length = "", None
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_BYTES:
            candidate = str(value.decode("latin-1"))
            if _ACCEPTABLE_ID.match(candidate):
                request_id = candidate
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None  # unparseable: count the bytes instead
    return request_id or uuid.uuid4().hex, length


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
