"""The prediction log's lines: one JSON object per row, stamped in UTC to the millisecond."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from prediction_log import PredictionLog


def record(log: PredictionLog, request_id: str) -> None:
    log.record(
        request_id=request_id, route="/predict/batch", model_version="v1",
        inputs=[{"RM": 6.5}, {"RM": None}], predictions=[24.5, 21.0], latency_ms=1.23456,
    )  # fmt: skip


def test_each_row_is_a_line_with_the_request_fields(tmp_path: Path) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), 1.0)
    record(log, "abc")
    log.close()
    lines = [orjson.loads(line) for line in sink.read_bytes().splitlines()]
    shared = {"event": "prediction", "request_id": "abc", "route": "/predict/batch",
              "model_version": "v1", "latency_ms": 1.235}  # fmt: skip
    assert [{k: v for k, v in line.items() if k != "ts"} for line in lines] == [
        {**shared, "row": 0, "inputs": {"RM": 6.5}, "prediction": 24.5},
        {**shared, "row": 1, "inputs": {"RM": None}, "prediction": 21.0},
    ]


@pytest.mark.parametrize(
    "now",
    [1_796_000_000.0, 1_796_000_000.9999, 1_796_000_001.0005, 1_796_086_399.999, 1_796_086_400.0],
)
def test_the_timestamp_is_the_moment_in_utc_to_the_millisecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: float
) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), 1.0)
    # a record a second earlier first: the text up to the second must be made anew
    monkeypatch.setattr(time, "time", lambda: now - 1)
    record(log, "before")
    monkeypatch.setattr(time, "time", lambda: now)
    record(log, "now")
    log.close()
    stamps = [orjson.loads(line)["ts"] for line in sink.read_bytes().splitlines()]
    expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    earlier = datetime.fromtimestamp(now - 1, UTC).isoformat(timespec="milliseconds")
    assert stamps == [earlier, earlier, expected, expected]
