"""Routes whose endpoint takes the Request alone and returns its own Response.

FastAPI's route handler solves the endpoint's dependencies, parses query and body parameters and
serialises a response model on every call; for an endpoint that reads the request itself and
returns a finished Response, all of that finds nothing to do, yet cost /predict about a fifth of
its time in process (README, Speed). A DirectRoute calls the endpoint straight away. It is still
an APIRoute: it stays in the OpenAPI document with its declared response model and statuses, and
an exception it raises still reaches the app's exception handlers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        takes_request_alone = len(inspect.signature(endpoint).parameters) == 1
        if not takes_request_alone or self.dependant.request_param_name is None:
            raise TypeError(f"{endpoint.__name__}: a DirectRoute endpoint takes the Request alone")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint
