"""DirectRoute (api/direct.py): the hot routes call their endpoint with the Request alone."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request, Response

from api.direct import DirectRoute
from api.main import create_app


def test_the_prediction_and_feedback_routes_are_direct() -> None:
    app = create_app()
    direct = {route.path for route in app.routes if isinstance(route, DirectRoute)}
    assert direct == {"/predict", "/predict/batch", "/invocations", "/feedback"}
    # still documented as FastAPI routes: the schema FastAPI derives from the declared model
    documented = app.openapi()["paths"]
    assert "Prediction" in str(documented["/predict"]["post"]["responses"]["200"])


def test_an_endpoint_that_wants_more_than_the_request_is_refused_by_name() -> None:
    async def wants_a_query(request: Request, limit: int) -> Response:
        return Response()

    with pytest.raises(TypeError, match="wants_a_query: a DirectRoute endpoint takes the Request"):
        FastAPI().router.add_api_route("/x", wants_a_query, route_class_override=DirectRoute)


def test_an_endpoint_without_the_request_is_refused_by_name() -> None:
    async def takes_nothing() -> Response:
        return Response()

    with pytest.raises(TypeError, match="takes_nothing: a DirectRoute endpoint takes the Request"):
        FastAPI().router.add_api_route("/x", takes_nothing, route_class_override=DirectRoute)
