"""Routes whose endpoint takes the Request alone and returns its own Response.

FastAPI's route handler solves the endpoint's dependencies, parses query and body parameters and
serialises a response model on every call; for an endpoint that reads the request itself and
returns a finished Response, all of that finds nothing to do, yet cost /predict about a fifth of
its time in process (README, Speed). A DirectRoute calls the endpoint straight away, without the
two exit stacks FastAPI opens around every call for dependencies with `yield` (it has none). It is
still an APIRoute: it stays in the OpenAPI document with its declared response model and
statuses, and an exception it raises reaches the app's exception handlers (through the app's
ExceptionMiddleware, which holds the same handlers a route would apply).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        takes_request_alone = len(inspect.signature(endpoint).parameters) == 1
        if not takes_request_alone or self.dependant.request_param_name is None:
            raise TypeError(f"{endpoint.__name__}: a DirectRoute endpoint takes the Request alone")
        handle = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handle(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # also what FastAPI wraps if the route is ever included through a router
        return self.endpoint
