"""Ground truth for served predictions: what a client later learns a house really sold for.

A label names the prediction it belongs to by the request id the service answered with (the
`X-Request-ID` header) and, for a batch, the row. It is always kept: a label for a request id this
worker does not know, or a second label for the same row, is logged and marked as such, never
refused, since refusing would lose a real outcome. The monitoring report joins the labels with the
prediction log, where every worker's predictions meet (monitoring/performance.py).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from api.schemas import Label

# the requests a worker remembers: ids are 32 bytes, so about 20 MB
REMEMBERED_REQUESTS = 100_000


class Answered:
    """The most recent requests this worker answered with predictions, and the rows it took
    labels for: enough to mark a label as unknown or repeated while the label is fresh."""

    def __init__(self, capacity: int = REMEMBERED_REQUESTS) -> None:
        self._capacity = capacity
        self._requests: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._labelled: OrderedDict[tuple[str, int], None] = OrderedDict()

    def remember(self, request_id: str, model_version: str, rows: int) -> None:
        self._requests[request_id] = (model_version, rows)
        if len(self._requests) > self._capacity:
            self._requests.popitem(last=False)

    def mark(self, label: Label) -> dict[str, Any]:
        """The feedback log's line for `label`: the label, and what this worker knows of it."""
        key = (label.request_id, label.row)
        answered = self._requests.get(label.request_id)
        known = answered is not None and label.row < answered[1]
        repeated = key in self._labelled
        self._labelled[key] = None
        if len(self._labelled) > self._capacity:
            self._labelled.popitem(last=False)
        return {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": "feedback",
            "request_id": label.request_id,
            "row": label.row,
            "actual": label.actual,
            "model_version": answered[0] if known and answered else None,
            "known": known,
            "repeated": repeated,
        }
