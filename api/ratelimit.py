"""Per-client rate limits, in the strategy of the `limits` library (which slowapi is built on).

A client is its API key when the service has one (hashed: the key never reaches the counters'
storage), else its address. Every response of a limited route carries the IETF draft fields
RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset; over the limit the client gets 429 with
Retry-After. /health and /metrics are never limited (the service middleware, which asks the
limiter, leaves them out): an orchestrator's probe or a scrape must not
fail because a client is busy. Counters live in the process (each worker then has its own) or,
with BOSTON_API_RATE_LIMIT_STORAGE=redis://..., in Redis, shared by every worker and replica.
The sliding-window-counter strategy weighs the previous window's count by how much of it the
current window still overlaps: constant work per request. A moving window keeps every hit's time
and reads them all, so its cost grows with the limit (docs/decisions/0011-rate-limit-counters.md).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

logger = logging.getLogger(__name__)


class RateLimitSettingError(ValueError):
    """A rate-limit setting the service cannot use; the message names the variable."""


def parse_limits(text: str) -> list[RateLimitItem]:
    """'100/second' or several, ';'-separated ('20/second;600/minute': bursts of 20, 10/s on
    average). The error names the variable, since that is where the text came from."""
    try:
        return list(parse_many(text))
    except ValueError:
        raise RateLimitSettingError(
            f"BOSTON_API_RATE_LIMIT={text!r} is not a rate limit; write it as 'COUNT/UNIT' with "
            "UNIT one of second, minute, hour, day, several separated by ';' "
            "(for example '100/second' or '20/second;600/minute')"
        ) from None


class Verdict(NamedTuple):
    allowed: bool
    remaining: int  # requests left in the window
    reset: int  # whole seconds until the window frees a request


class Windows(Protocol):
    async def check(self, item: RateLimitItem, client: str, now: float) -> Verdict:
        """Count a request of `client` against `item` (only if it is allowed)."""
        ...


class LocalWindows:
    """Sliding-window counters in this process, the strategy of `limits`' sliding-window counter:
    the previous fixed window's count, weighted by how much of it the sliding window still
    covers, plus the current one's, kept in a plain dict: `limits`' own memory storage goes
    through layers of async wrappers per request (docs/decisions/0011-rate-limit-counters.md)."""

    _SWEEP_EVERY = 10_000  # checks between sweeps of counters no window needs any more

    def __init__(self) -> None:
        # (client, amount, seconds) -> [window number, previous window's count, this window's]
        self._counters: dict[tuple[str, int, int], list[int]] = {}
        self._checks = 0

    async def check(self, item: RateLimitItem, client: str, now: float) -> Verdict:
        seconds = item.get_expiry()
        window, into = divmod(now, seconds)
        counter = self._counters.setdefault((client, item.amount, seconds), [int(window), 0, 0])
        if counter[0] != window:  # a new window: the old current becomes the previous, or 0
            counter[1] = counter[2] if counter[0] == window - 1 else 0
            counter[0], counter[2] = int(window), 0
        weighted = counter[1] * (1.0 - into / seconds) + counter[2]
        allowed = weighted + 1 <= item.amount
        if allowed:
            counter[2] += 1
            weighted += 1
        self._checks += 1
        if self._checks % self._SWEEP_EVERY == 0:
            self._sweep(now)
        # the window ends, and the previous one's weight is gone, within this many seconds
        reset = max(1, math.ceil(seconds - into))
        return Verdict(allowed, max(0, math.floor(item.amount - weighted)), reset)

    def _sweep(self, now: float) -> None:
        for key, counter in list(self._counters.items()):
            if counter[0] < now // key[2] - 1:
                del self._counters[key]


class SharedWindows:
    """The same strategy in a store every worker shares (Redis), through `limits`: there a
    network round trip costs more than the library."""

    def __init__(self, storage: str) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(
            storage_from_string(f"async+{storage}", implementation="redispy")
        )

    async def check(self, item: RateLimitItem, client: str, now: float) -> Verdict:
        allowed = await self._limiter.hit(item, client)
        stats = await self._limiter.get_window_stats(item, client)
        return Verdict(allowed, stats.remaining, max(1, math.ceil(stats.reset_time - now)))


def storage_scheme(storage: str) -> str:
    """'memory' or 'redis'/'rediss'; any other storage is refused, naming the variable."""
    scheme = storage.partition("://")[0]
    if scheme not in ("memory", "redis", "rediss"):
        raise RateLimitSettingError(
            f"BOSTON_API_RATE_LIMIT_STORAGE={storage!r}: use memory:// (each worker counts on "
            "its own) or redis://HOST:PORT[/DB] (every worker shares the counters)"
        )
    return scheme


def windows_for(storage: str) -> Windows:
    """The counters in `storage`: 'memory://' (per worker) or 'redis://host:port/db' (shared)."""
    return LocalWindows() if storage_scheme(storage) == "memory" else SharedWindows(storage)


class RateLimiter:
    """Decides, per request, whether its client is within every limit; the service middleware
    asks it (one ASGI layer less than a middleware of its own, a few microseconds of /predict)."""

    def __init__(
        self,
        limits: list[RateLimitItem],
        windows: Windows,
        key_header: str | None,
        routes: Sequence[BaseRoute],
    ) -> None:
        """`key_header`: the API key's header when the service has a key, else None; `routes`:
        the app's routes, to name the route a refused request was for in the request metrics."""
        self.limits = limits
        self.windows = windows
        self.key_header = key_header.lower().encode() if key_header else None
        self.routes = routes

    async def check(self, scope: Scope) -> tuple[Refused | None, list[tuple[bytes, bytes]]]:
        """None and the RateLimit-* headers to add when the request may go on; else why not."""
        try:
            allowed, item, remaining, reset = await self._count(self._client(scope))
        except Exception:  # an unreachable store must not take the service down
            logger.exception("rate limit storage failed; letting the request through")
            return None, []
        headers = [
            (b"ratelimit-limit", str(item.amount).encode()),
            (b"ratelimit-remaining", str(remaining).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
        if allowed:
            return None, headers
        # refused before routing: name the route, so the request metrics count it under it
        scope["route"] = next(
            (route for route in self.routes if route.matches(scope)[0] is Match.FULL), None
        )
        detail = f"rate limit exceeded: {item}; retry after {reset} s"
        return Refused(detail, [(b"retry-after", str(reset).encode())]), headers

    def _client(self, scope: Scope) -> str:
        if self.key_header is not None:
            for name, value in scope["headers"]:
                if name == self.key_header:
                    return "key:" + hashlib.sha256(value).hexdigest()[:32]
        address = scope.get("client")
        return f"address:{address[0] if address else 'unknown'}"

    async def _count(self, client: str) -> tuple[bool, RateLimitItem, int, int]:
        """Check every limit in turn; the first one exceeded decides. The headers describe the
        limit that decided, or the tightest one (least remaining) when all allow the request."""
        tightest: tuple[bool, RateLimitItem, int, int] | None = None
        now = time.time()
        for item in self.limits:
            verdict = await self.windows.check(item, client, now)
            figures = (verdict.allowed, item, verdict.remaining, verdict.reset)
            if not verdict.allowed:
                return figures
            if tightest is None or verdict.remaining < tightest[2]:
                tightest = figures
        assert tightest is not None  # parse_limits never yields no limit
        return tightest


class Refused(NamedTuple):
    detail: str
    headers: list[tuple[bytes, bytes]]  # beyond the RateLimit-* fields, which every answer has
