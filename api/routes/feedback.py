"""POST /feedback: the observed price of houses the service predicted for (see api/feedback.py)."""

from __future__ import annotations

from enum import Enum

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.dependencies import authorise, serving
from api.direct import DirectRoute
from api.openapi import PREDICTION_ROUTE
from api.routes.predict import read_body, validate_body
from api.runtime import Runtime
from api.schemas import FeedbackReceipt


def register(app: FastAPI) -> None:
    tags: list[str | Enum] = ["feedback"]
    app.router.add_api_route(
        "/feedback", feedback, methods=["POST"], response_model=FeedbackReceipt,
        openapi_extra=PREDICTION_ROUTE, tags=tags, route_class_override=DirectRoute,
    )  # fmt: skip


async def feedback(request: Request) -> JSONResponse:
    """Record what houses really sold for: `{"request_id", "actual", "row"}` (row 0 unless the
    prediction was a batch), or a list of them. Every label is kept, those for a request id this
    worker does not know, or already labelled, included; the answer counts them."""
    authorise(request)
    runtime: Runtime = request.app.state.runtime
    current = serving(runtime)  # the card's target bounds check the labels
    body = await read_body(request)
    many = body.lstrip()[:1] == b"["
    labels = validate_body(current.labels, body) if many else [validate_body(current.label, body)]
    lines = [runtime.answered.mark(label) for label in labels]
    runtime.feedback_log.append(lines)
    receipt = FeedbackReceipt(
        recorded=len(lines),
        unknown=sum(not line["known"] for line in lines),
        repeated=sum(line["repeated"] for line in lines),
    )
    return JSONResponse(receipt.model_dump())
