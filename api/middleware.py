"""Pure ASGI middleware (no per-request task overhead): request ids, body checks, HTTP metrics."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.overload import LoopLag
from api.ratelimit import RateLimiter

if TYPE_CHECKING:
    from api.observability import Metrics

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_JSON = "application/json"
_VITAL = frozenset({"/health", "/metrics"})  # never shed nor rate-limited
_RETRY_IN_A_SECOND = (b"retry-after", b"1")
_CLIENT_CLOSED = 499  # the client went away before its request was read (nginx's code)


class Refusal(Exception):
    """The request is answered without the app: its body is too large, too slow, of another
    media type or encoding, or the worker is too far behind to start it soon."""

    def __init__(
        self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or []


class ServiceMiddleware:
    """Tags each request with an id, refuses bodies it cannot read (a media type other than JSON,
    a compressed encoding, more bytes than the cap, or bytes arriving too slowly), and counts it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout: float,
        lag: LoopLag,
        shed_lag: float,
        limiter: RateLimiter | None,
    ) -> None:
        """`shed_lag`: seconds of event-loop lag past which requests are shed (0: never);
        `limiter`: the per-client rate limits, if any."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.deadlines = _BodyDeadlines(body_timeout)
        self.lag = lag
        self.shed_lag = shed_lag
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _read_headers(scope)
        scope.setdefault("state", {})["request_id"] = request_id = headers.request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        added = [(_REQUEST_ID_BYTES, request_id.encode())]  # and the rate-limit fields, if any

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        try:
            refusal = self._refusal(headers) if scope["method"] in _WITH_BODY else None
            if self.shed_lag and self.lag.seconds > self.shed_lag and scope["path"] not in _VITAL:
                # a probe or a scrape still gets through: a busy worker is not a dead one
                overloaded = Refusal(503, _overloaded(self.lag.seconds), [_RETRY_IN_A_SECOND])
                await _refuse(send_with_id, overloaded)
            elif refusal is not None:
                await _refuse(send_with_id, refusal)
            else:
                if self.limiter is not None and scope["path"] not in _VITAL:
                    await self._apply_limits(scope, added)
                guard = _BodyGuard(receive, headers.length, self.max_body_bytes, self.deadlines)
                try:
                    await self.app(scope, guard, send_with_id)
                except asyncio.CancelledError:
                    if not guard.expired:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    raise guard.late() from None
                finally:
                    guard.close()
        except Refusal as refusal:
            if response_started:
                raise
            await _refuse(send_with_id, refusal)
        except ClientDisconnect:
            status = _CLIENT_CLOSED  # nobody is left to answer; counted, not an error
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:  # None only before the lifespan has started
                metrics.record_request(
                    route, scope["method"], status, time.perf_counter() - started
                )

    async def _apply_limits(self, scope: Scope, added: list[tuple[bytes, bytes]]) -> None:
        """Add the limiter's fields to the answer; over a limit, refuse the request (429)."""
        assert self.limiter is not None
        refused, fields = await self.limiter.check(scope)
        added.extend(fields)
        if refused is not None:
            raise Refusal(429, refused.detail, refused.headers)

    def _refusal(self, headers: _Headers) -> Refusal | None:
        if headers.length is not None and headers.length > self.max_body_bytes:
            return Refusal(413, f"request body exceeds {self.max_body_bytes} bytes")
        if headers.encoding not in (None, "identity"):
            # never decompressed, so a compression bomb costs nothing
            return Refusal(
                415, f"Content-Encoding {headers.encoding!r} is not accepted; send the body "
                "uncompressed (the body cap is on the bytes sent)",
            )  # fmt: skip
        if headers.media_type is not None and not _is_json(headers.media_type):
            return Refusal(
                415, f"Content-Type {headers.media_type!r} is not accepted; send application/json"
            )
        return None


class _BodyGuard:
    """`receive` while the body streams in: the whole body must arrive before its deadline (a
    client sending a byte at a time is cut off), and a body without a declared length is counted
    against the cap (the server reads exactly Content-Length bytes)."""

    def __init__(
        self, receive: Receive, declared_length: int | None, limit: int, deadlines: _BodyDeadlines
    ) -> None:
        self._receive = receive
        self._count = declared_length is None
        self._received = 0
        self._limit = limit
        self._deadlines = deadlines
        self._task: asyncio.Task[Any] | None = None
        self._body_done = False
        self.expired = False

    async def __call__(self) -> Message:
        if self._body_done:  # later waits (for a disconnect) are not the body's
            return await self._receive()
        if self._task is None:
            self._task = asyncio.current_task()
            self._deadlines.watch(self)
        message = await self._receive()
        if message["type"] == "http.request":
            if self._count:
                self._received += len(message.get("body", b""))
                if self._received > self._limit:
                    raise Refusal(413, f"request body exceeds {self._limit} bytes")
            if not message.get("more_body", False):
                self._body_done = True
                self.close()
        return message

    def expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def late(self) -> Refusal:
        return Refusal(408, f"request body not received within {self._deadlines.timeout:g} s")

    def close(self) -> None:
        self._deadlines.forget(self)


class _BodyDeadlines:
    """The body deadlines of the requests in flight, kept by one timer per worker that wakes every
    tenth of the timeout (a second at most) while any are pending and cancels the late ones: a
    body is cut off at most that much after its deadline, and a request costs a dict entry, not a
    timer of its own.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._tick = min(timeout / 10, 1.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        # insertion order is deadline order: every request gets the same timeout
        self._pending: dict[_BodyGuard, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, guard: _BodyGuard) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests start several): start afresh
            self._loop, self._pending, self._timer = loop, {}, None
        self._pending[guard] = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_later(self._tick, self._sweep)

    def forget(self, guard: _BodyGuard) -> None:
        self._pending.pop(guard, None)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        while self._pending:
            guard, deadline = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[guard]
            guard.expire()
        self._timer = self._loop.call_later(self._tick, self._sweep) if self._pending else None


class _Headers(NamedTuple):
    request_id: str
    length: int | None
    media_type: str | None
    encoding: str | None


def _read_headers(scope: Scope) -> _Headers:
    """The request id to use (the client's, when it is safe to echo), the declared length, media
    type and content encoding."""
    request_id, length, media_type, encoding = "", None, None, None
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
        elif name == b"content-type":
            media_type = (
                _JSON  # the usual case, without the parsing
                if value == b"application/json"
                else value.decode("latin-1").partition(";")[0].strip().lower()
            )
        elif name == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
    # 128 random bits as hex: the id of a request that brought no usable one
    return _Headers(request_id or os.urandom(16).hex(), length, media_type, encoding)


def _overloaded(lag: float) -> str:
    return f"overloaded: requests wait {lag * 1000:.0f} ms to start; retry after 1 s"


def _is_json(media_type: str) -> bool:
    return media_type == _JSON or media_type.endswith("+json")


async def _refuse(send: Any, refusal: Refusal) -> None:
    body = orjson.dumps({"detail": refusal.detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *refusal.headers,
    ]
    if refusal.status in (408, 413):
        # the rest of the body may still be on its way: do not read it as the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
