"""The connection that joins a worker already shutting down (api.draining), on real sockets.

asyncio's own path for an accepted socket (`connect_accepted_socket`) builds each connection, so
the order that loses the race in production is set here exactly: a connection open when the
shutdown round runs, then one that joins after it.
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.__main__ import HTTP_PROTOCOL
from api.draining import DrainingHttpToolsProtocol


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("no request is sent in these tests")


def _latecomer_closing(protocol: type[HttpToolsProtocol], *, shutting_down: bool) -> bool:
    """Whether a connection that joins after the shutdown round (if any) is being closed."""

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(_app, http=protocol, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()

        def make() -> asyncio.Protocol:
            return protocol(config=config, server_state=state, app_state={})

        pairs = [socket.socketpair() for _ in range(2)]
        try:
            _, first = await loop.connect_accepted_socket(make, pairs[0][0])
            if shutting_down:
                assert isinstance(first, HttpToolsProtocol)
                first.shutdown()  # uvicorn's round at SIGTERM: it reaches the connections open now
            late, _ = await loop.connect_accepted_socket(make, pairs[1][0])
            closing = late.is_closing()
            for connection in list(state.connections):
                connection.transport.close()
            await asyncio.sleep(0)  # the transports finish closing on this loop
            return closing
        finally:
            for pair in pairs:
                for end in pair:
                    end.close()

    # in a thread of its own: Playwright's sync API (the browser tests) keeps a loop running here
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def test_the_launcher_serves_with_the_draining_protocol() -> None:
    config = uvicorn.Config("api.main:app", http=HTTP_PROTOCOL)
    config.load()
    assert config.http_protocol_class is DrainingHttpToolsProtocol


def test_a_connection_joining_during_shutdown_is_closed_before_it_reads_a_request() -> None:
    assert _latecomer_closing(DrainingHttpToolsProtocol, shutting_down=True)


def test_a_connection_joining_a_server_at_work_stays_open() -> None:
    assert not _latecomer_closing(DrainingHttpToolsProtocol, shutting_down=False)


@pytest.mark.parametrize("shutting_down", [True, False])
def test_uvicorns_own_protocol_keeps_the_latecomer_open(shutting_down: bool) -> None:
    """The gap api.draining closes; when uvicorn closes it itself, this fails and the subclass
    can go."""
    assert not _latecomer_closing(HttpToolsProtocol, shutting_down=shutting_down)
