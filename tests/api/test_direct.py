"""DirectRoute (api/direct.py): the hot routes call their endpoint with the Request alone."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient

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


def test_a_direct_route_included_through_a_router_still_gets_the_request_alone() -> None:
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="text/plain")

    router = APIRouter()
    router.add_api_route("/echo", echo, methods=["POST"], route_class_override=DirectRoute)
    (route,) = router.routes
    assert isinstance(route, DirectRoute)
    assert route.get_route_handler() is echo  # what FastAPI wraps for an included route
    app = FastAPI()
    app.include_router(router, prefix="/v1")
    answer = TestClient(app).post("/v1/echo", content=b"as sent")
    assert answer.status_code == 200
    assert answer.text == "as sent"
