"""The prediction log's record: what the writer writes is what the reader reads; gzip; malformed
lines counted and described; sampling."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from prediction_log import (
    FEEDBACK_FIELDS,
    PREDICTION_FIELDS,
    Feedback,
    Prediction,
    PredictionLog,
    Skipped,
    read_records,
)

ROWS: list[dict[str, Any]] = [{"RM": 6.5, "CHAS": 0}, {"RM": None, "CHAS": 1}]


def write_batch(log: PredictionLog, request_id: str = "abc") -> None:
    log.record(
        request_id=request_id, route="/predict/batch", model_version="v1", inputs=ROWS,
        predictions=[24.5, 21.0], latency_ms=1.23456,
    )  # fmt: skip


def read(*paths: Path) -> tuple[list[Prediction | Feedback], Skipped]:
    skipped = Skipped()
    return list(read_records(paths, skipped)), skipped


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), 1.0)
    before = datetime.now(UTC).replace(microsecond=0)
    write_batch(log)
    label = {"ts": "2026-11-02T10:00:00.000+00:00", "event": "feedback", "request_id": "abc",
             "row": 1, "actual": 22.0, "model_version": "v1", "known": True,
             "repeated": False}  # fmt: skip
    log.append([label])
    log.close()
    lines = [orjson.loads(line) for line in sink.read_bytes().splitlines()]
    assert [tuple(line) for line in lines[:2]] == [PREDICTION_FIELDS] * 2
    assert set(FEEDBACK_FIELDS) <= set(lines[2])
    records, skipped = read(sink)
    assert skipped.count == 0
    first, second, feedback = records
    assert isinstance(first, Prediction) and isinstance(second, Prediction)
    assert (first.request_id, first.row, first.route, first.model_version) == (
        "abc", 0, "/predict/batch", "v1",
    )  # fmt: skip
    assert (first.latency_ms, first.prediction, second.row, second.prediction) == (
        1.235, 24.5, 1, 21.0,
    )  # fmt: skip
    assert [first.inputs, second.inputs] == ROWS  # as sent: nulls and whole numbers kept
    assert first.ts == second.ts and first.ts >= before and first.ts.tzinfo is not None
    assert feedback == Feedback(datetime(2026, 11, 2, 10, tzinfo=UTC), "abc", 1, 22.0)


def test_one_line_is_one_json_object_flushed_at_once(tmp_path: Path) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), 1.0)
    write_batch(log)
    # readable before close: a log shipper sees each line as soon as it is written
    text = sink.read_text()
    assert text.endswith("\n") and text.count("\n") == 2
    assert all(isinstance(json.loads(line), dict) for line in text.splitlines())
    log.close()


def test_gzip_and_plain_logs_are_read_alike(tmp_path: Path) -> None:
    plain = tmp_path / "log.jsonl"
    log = PredictionLog(str(plain), 1.0)
    write_batch(log, "first")
    write_batch(log, "second")
    log.close()
    packed = tmp_path / "old.jsonl.gz"  # the reader goes by the content, not the name
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    records, skipped = read(plain, packed)
    assert skipped.count == 0
    assert [(r.request_id, r.row) for r in records] == [("first", 0), ("first", 1), ("second", 0),
                                                         ("second", 1)] * 2  # fmt: skip


def test_malformed_lines_are_counted_described_and_skipped(tmp_path: Path) -> None:
    good = {"ts": "2026-11-02T10:00:00+00:00", "event": "prediction", "request_id": "r",
            "route": "/predict", "model_version": "v", "latency_ms": 1.0, "row": 0,
            "inputs": {"RM": 6.0}, "prediction": 20.0}  # fmt: skip
    bad = [
        "{not json",
        "[1, 2]",
        json.dumps({**good, "event": "audit"}),
        json.dumps({key: value for key, value in good.items() if key != "route"}),
        json.dumps({"ts": good["ts"], "event": "feedback", "request_id": "r", "actual": 1.0}),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([json.dumps(good), "", *bad, json.dumps(good)]) + "\n")
    records, skipped = read(path)
    assert len(records) == 2  # the good lines; the blank line is no record and no problem
    assert skipped.count == len(bad)
    assert len(skipped.examples) == 3  # only the first few are described
    assert skipped.examples[0].startswith(f"{path}:3: not JSON (")
    assert skipped.examples[1:] == [
        f"{path}:4: not a JSON object",
        f"{path}:5: event 'audit' is none of prediction, feedback",
    ]
    assert skipped.describe().startswith(f"skipped 5 malformed line(s): {path}:3: not JSON")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"route": None}, "route is None, not a string"),
        ({"event": None}, "event None is none of prediction, feedback"),
        ({"route": 1}, "route is 1, not a string"),
        ({"prediction": "20"}, "prediction is '20', not a number"),
        ({"prediction": True}, "prediction is True, not a number"),
        ({"ts": "yesterday"}, "ts is 'yesterday', not an ISO time"),
        ({"inputs": {"RM": "six"}}, "inputs RM are neither numbers nor null"),
        ({"inputs": [6.0]}, "inputs is [6.0], not an object"),
        ({"row": -1}, "row is -1, not a whole number >= 0"),
    ],
)
def test_each_problem_is_named(tmp_path: Path, change: dict[str, object], why: str) -> None:
    line = {"ts": "2026-11-02T10:00:00+00:00", "event": "prediction", "request_id": "r",
            "route": "/predict", "model_version": "v", "latency_ms": 1.0, "row": 0,
            "inputs": {"RM": 6.0}, "prediction": 20.0, **change}  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(line) + "\n")
    records, skipped = read(path)
    assert records == [] and skipped.examples == [f"{path}:1: {why}"]


def test_rows_of_older_lines_are_their_order_within_the_request(tmp_path: Path) -> None:
    """Lines written before rows were numbered: what a label for a batch row then names."""
    line = {"ts": "2026-11-02T10:00:00", "event": "prediction", "route": "/predict/batch",
            "model_version": "v", "latency_ms": 1.0, "inputs": {}, "prediction": 20.0}  # fmt: skip
    path = tmp_path / "log.jsonl"
    ids = ["a", "b", "a", "a"]
    path.write_text("".join(json.dumps({**line, "request_id": i}) + "\n" for i in ids))
    records, _ = read(path)
    assert [(r.request_id, r.row) for r in records] == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    assert records[0].ts.tzinfo is UTC  # a time without a zone is read as UTC


def test_sampling_keeps_about_that_share_of_rows_and_every_label(tmp_path: Path) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), 0.3)
    rows = 10_000
    log.record(
        request_id="big", route="/predict/batch", model_version="v1", inputs=[{}] * rows,
        predictions=[20.0] * rows, latency_ms=5.0,
    )  # fmt: skip
    log.append([{"event": "feedback", "request_id": "big", "row": row, "actual": 1.0}
                for row in range(50)])  # fmt: skip
    log.close()
    lines = [orjson.loads(line) for line in sink.read_bytes().splitlines()]
    kept = [line for line in lines if line["event"] == "prediction"]
    assert 0.27 * rows < len(kept) < 0.33 * rows  # 0.3 +- 6 standard deviations
    numbers = [line["row"] for line in kept]
    assert numbers == sorted(set(numbers))  # each kept row keeps its place in the request
    assert sum(line["event"] == "feedback" for line in lines) == 50  # labels are never sampled


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 2)])
def test_sampling_at_the_ends_keeps_nothing_or_everything(
    tmp_path: Path, rate: float, expected: int
) -> None:
    sink = tmp_path / "log.jsonl"
    log = PredictionLog(str(sink), rate)
    write_batch(log)
    log.close()
    assert len(sink.read_bytes().splitlines()) == expected


def test_standard_output_is_a_sink_and_is_left_open(capfd: pytest.CaptureFixture[str]) -> None:
    log = PredictionLog("stdout", 1.0)
    write_batch(log)
    log.close()
    out = capfd.readouterr().out.splitlines()
    assert [json.loads(line)["row"] for line in out] == [0, 1]
