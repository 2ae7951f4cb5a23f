"""Load shedding by event-loop lag: when a worker is behind, say so at once instead of queueing.

The prediction handlers never pause, so a count of requests in flight stays near one while the
real queue (requests read but not yet run) builds up in the event loop, where only its delay shows.
A task sleeps a few milliseconds in a loop and records how late it wakes: that lateness is how long
a request arriving now would wait before it even starts. Past BOSTON_API_SHED_LAG_MS the middleware
answers at once 503 with Retry-After, and the worker spends its time on the requests it kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

_INTERVAL = 0.005  # seconds between wake-ups: 200 a second, a fraction of a percent of a core


class LoopLag:
    """The event loop's current lag, in seconds (0 until the watch starts)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        previous = 0.0
        while True:
            started = loop.time()
            await asyncio.sleep(_INTERVAL)
            late = max(0.0, loop.time() - started - _INTERVAL)
            # the lesser of two wakes in a row: one late wake is a stall (a collection, the core
            # lent to another process) that is already over; a queue makes every wake late
            self.seconds, previous = min(late, previous), late

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Keep the figure current for the block's duration (the app's lifespan)."""
        task = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.seconds = 0.0
