"""POST /feedback: the observed price of houses the service predicted for (see api/feedback.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.dependencies import JsonBody, RuntimeDep, ServingDep
from api.openapi import body_declared_later
from api.schemas import FeedbackReceipt
from api.scoring import validated

router = APIRouter(tags=["feedback"])


@router.post("/feedback", openapi_extra=body_declared_later())
async def feedback(body: JsonBody, current: ServingDep, runtime: RuntimeDep) -> FeedbackReceipt:
    """Record what houses really sold for: `{"request_id", "actual", "row"}` (row 0 unless the
    prediction was a batch), or a list of them. Every label is kept, those for a request id this
    worker does not know, or already labelled, included; the answer counts them."""
    # the first loc item is the schema's choice of one label or many, not part of the body
    sent = validated(current.feedback, body, drop=1)
    labels = sent if isinstance(sent, list) else [sent]
    lines = [runtime.answered.mark(label) for label in labels]
    runtime.feedback_log.append(lines)
    return FeedbackReceipt(
        recorded=len(lines),
        unknown=sum(not line["known"] for line in lines),
        repeated=sum(line["repeated"] for line in lines),
    )
