"""uvicorn's HTTP protocol, with one gap in its graceful shutdown closed.

At SIGTERM uvicorn stops listening, then asks each open connection to finish: an idle one is
closed, a busy one answers its request with `Connection: close`. A connection whose accept was
already under way joins the server just after that round, is never asked, and goes on serving
keep-alive requests until the grace period runs out and the app is shut down beneath it: under
load, requests on it were answered 500 (their log already closed) by a server that was draining.
Such a latecomer is closed as soon as it joins, before it has read anything, like a connection
that reached the socket after the server stopped listening.
"""

from __future__ import annotations

import asyncio
import weakref

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# The servers (one per worker process) that have begun their shutdown round.
_draining: weakref.WeakSet[ServerState] = weakref.WeakSet()


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """A connection that joins a server already shutting down is shut down at once.

    The round is noticed through the connections it reaches, so it is missed only when the
    server had no open connection at all when it began.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.server_state in _draining:
            self.shutdown()

    def shutdown(self) -> None:
        _draining.add(self.server_state)
        super().shutdown()
