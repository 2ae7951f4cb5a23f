"""The prediction log's record: its fields, its writer and its reader.

The service writes one JSON object per line with `PredictionLog`. `read_records` reads them back a
line at a time by the record's strict rules: the reference reading that the reports' columnar
reader (monitoring/logs.py, which takes a day of logs) is checked against by
`make monitor-volume`, and what the tests read the service's lines with.
A file sink may rotate (rotating_log.py). Standard library, orjson, conformal.py and
rotating_log.py: the serving image carries these beside artifact.py.
"""

from __future__ import annotations

import functools
import gzip
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from conformal import Interval
from rotating_log import ROTATE_SETTING, RotatingFile, parse_rotation

PREDICTION = "prediction"
FEEDBACK = "feedback"
EVENTS = (PREDICTION, FEEDBACK)

# Every field a line of each event carries. A prediction line is one row of a request: `row` is
# its place in the request, what a label for a batch names. A feedback line is one label; the
# service adds its notes (`model_version`, `known`, `repeated`), which no report needs.
PREDICTION_FIELDS = (
    "ts", "event", "request_id", "route", "model_version", "latency_ms", "row", "inputs",
    "prediction",
)  # fmt: skip
FEEDBACK_FIELDS = ("ts", "event", "request_id", "row", "actual")
# A prediction served with a conformal interval also carries its bounds (conformal.py); lines of a
# model calibrated without intervals, and older lines, have none.
INTERVAL_FIELDS = ("lower", "upper", "upper_censored", "level")

_SHOWN_PROBLEMS = 3


class PredictionLog:
    """One JSON line per predicted row, and the labels' lines beside them.

    Lines are written straight to the sink under a lock (batch lines are written from a worker
    thread) and flushed at once: a line is only useful to a log shipper once written. With
    `rotate` (parse_rotation's forms) a file sink is written by `RotatingFile` instead; without
    it, a file is appended to for ever at the cost of one write per request.
    """

    def __init__(
        self,
        sink: str,
        sample_rate: float,
        rotate: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sample_rate = sample_rate
        self._owned = sink not in ("stdout", "stderr")
        if rotate is not None and not self._owned:
            raise ValueError(
                f"{ROTATE_SETTING} rotates a file sink; on {sink} rotation is the container "
                "runtime's (docs/operating.md#the-prediction-log)"
            )
        self._rotating = (
            None if rotate is None else RotatingFile(Path(sink), parse_rotation(rotate), clock)
        )
        self._stream: BinaryIO | None = (
            None
            if self._rotating is not None
            else open(sink, "ab")  # noqa: SIM115 - closed in close()
            if self._owned
            else (sys.stdout if sink == "stdout" else sys.stderr).buffer
        )
        self._lock = threading.Lock()
        self._random = random.Random()

    def record(
        self,
        *,
        request_id: str,
        route: str,
        model_version: str,
        inputs: Sequence[dict[str, Any]],
        predictions: Sequence[float],
        latency_ms: float,
        intervals: Sequence[Interval] | None = None,
        level: float | None = None,
    ) -> None:
        """One line per row of a request, each kept with probability `sample_rate`; `intervals`
        (one per row, at `level`) are logged beside the predictions when the model has them."""
        ts = _now()
        lines = [
            _encode(
                {
                    "ts": ts,
                    "event": PREDICTION,
                    "request_id": request_id,
                    "route": route,
                    "model_version": model_version,
                    "latency_ms": round(latency_ms, 3),
                    "row": row,
                    "inputs": sent,
                    "prediction": prediction,
                    **(
                        {}
                        if intervals is None
                        else {
                            "lower": intervals[row].lower,
                            "upper": intervals[row].upper,
                            "upper_censored": intervals[row].upper_censored,
                            "level": level,
                        }
                    ),
                }
            )
            for row, (sent, prediction) in enumerate(zip(inputs, predictions, strict=True))
            if self._sampled()
        ]
        if lines:
            self._write(b"".join(lines))

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Other events (labels), one line each, never sampled."""
        self._write(b"".join(_encode(record) for record in records))

    def close(self) -> None:
        """Close the sink; with rotation, after the closed files still being gzipped are done."""
        if self._rotating is not None:
            self._rotating.close()
        elif self._owned and self._stream is not None:
            self._stream.close()

    def _sampled(self) -> bool:
        return self.sample_rate >= 1.0 or self._random.random() < self.sample_rate

    def _write(self, lines: bytes) -> None:
        if self._rotating is not None:
            self._rotating.write(lines)
            return
        assert self._stream is not None
        with self._lock:
            self._stream.write(lines)
            self._stream.flush()


def _now() -> str:
    """Now in UTC, ISO 8601 to the millisecond."""
    now = time.time()
    second = int(now)
    return f"{_second_text(second)}.{int((now - second) * 1000):03d}+00:00"


@functools.lru_cache(maxsize=2)
def _second_text(second: int) -> str:
    # formatted once a second: a datetime formatted per line cost more than the rest of the line
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


@dataclass(frozen=True)
class Prediction:
    """One predicted row as the service logged it; `inputs` are the values as sent (None: null),
    what a label turns into a training row."""

    ts: datetime
    request_id: str
    row: int
    route: str
    model_version: str
    latency_ms: float
    inputs: dict[str, float | None]
    prediction: float
    interval: Interval | None = None  # the conformal interval served with it, if any
    level: float | None = None


@dataclass(frozen=True)
class Feedback:
    """One label: what the house of (request_id, row) really sold for."""

    ts: datetime
    request_id: str
    row: int
    actual: float


Record = Prediction | Feedback


@dataclass
class Skipped:
    """The lines that are not records: how many, and where and why for the first few."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.examples) < _SHOWN_PROBLEMS:
            self.examples.append(f"{where}: {why}")

    def describe(self) -> str:
        return f"skipped {self.count} malformed line(s): " + "; ".join(self.examples)

    def warn(self, reader: str) -> None:
        """Tell the reader's user on stderr, when any line was skipped: never silently."""
        if self.count:
            print(f"{reader}: warning: {self.describe()}", file=sys.stderr)


def read_records(paths: Iterable[Path], skipped: Skipped) -> Iterator[Record]:
    """Every record of `paths` (plain or gzip), in file order.

    A line that is not a record (not JSON, not an object, an unknown event, a field missing or of
    the wrong type) is counted in `skipped` and passed over; blank lines are ignored. Prediction
    lines written before rows were numbered get their order within their request in the file.
    """
    for path in paths:
        rows_so_far: dict[str, int] = defaultdict(int)
        for number, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = _record(orjson.loads(line), rows_so_far)
            except _NotARecord as problem:
                skipped.add(f"{path}:{number}", str(problem))
                continue
            except orjson.JSONDecodeError as error:
                skipped.add(f"{path}:{number}", f"not JSON ({error})")
                continue
            yield record


class _NotARecord(ValueError):
    pass


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines, gunzipped when it is gzip (told by its content, not its name)."""
    with path.open("rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"
    if compressed:
        with gzip.open(path, "rb") as unpacked:
            yield from unpacked
    else:
        with path.open("rb") as plain:
            yield from plain


def _record(parsed: Any, rows_so_far: dict[str, int]) -> Record:
    if not isinstance(parsed, dict):
        raise _NotARecord("not a JSON object")
    event = parsed.get("event")
    if event == PREDICTION:
        # `row` was added to the format later: older lines are numbered in their file's order
        _require(parsed, [name for name in PREDICTION_FIELDS if name != "row"], event)
        request_id = _text(parsed, "request_id")
        row = _row(parsed) if "row" in parsed else rows_so_far[request_id]
        rows_so_far[request_id] += 1
        return Prediction(
            ts=_time(parsed),
            request_id=request_id,
            row=row,
            route=_text(parsed, "route"),
            model_version=_text(parsed, "model_version"),
            latency_ms=_number(parsed, "latency_ms"),
            inputs=_inputs(parsed),
            prediction=_number(parsed, "prediction"),
            **_interval(parsed),
        )
    if event == FEEDBACK:
        _require(parsed, FEEDBACK_FIELDS, event)
        return Feedback(
            ts=_time(parsed),
            request_id=_text(parsed, "request_id"),
            row=_row(parsed),
            actual=_number(parsed, "actual"),
        )
    raise _NotARecord(f"event {event!r} is none of {', '.join(EVENTS)}")


def _interval(parsed: dict[str, Any]) -> dict[str, Any]:
    present = [name for name in INTERVAL_FIELDS if name in parsed]
    if not present:
        return {}
    _require(parsed, INTERVAL_FIELDS, "a prediction line with an interval")
    censored = parsed["upper_censored"]
    if not isinstance(censored, bool):
        raise _NotARecord(f"upper_censored is {censored!r}, not true or false")
    bounds = Interval(_number(parsed, "lower"), _number(parsed, "upper"), censored)
    return {"interval": bounds, "level": _number(parsed, "level")}


def _require(parsed: dict[str, Any], names: Sequence[str], event: str) -> None:
    missing = [name for name in names if name not in parsed]
    if missing:
        raise _NotARecord(f"{event} line lacks {', '.join(missing)}")


def _text(parsed: dict[str, Any], name: str) -> str:
    value = parsed[name]
    if not isinstance(value, str):
        raise _NotARecord(f"{name} is {value!r}, not a string")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(parsed: dict[str, Any], name: str) -> float:
    value = parsed[name]
    if not _is_number(value):
        raise _NotARecord(f"{name} is {value!r}, not a number")
    return float(value)


def _row(parsed: dict[str, Any]) -> int:
    value = parsed["row"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _NotARecord(f"row is {value!r}, not a whole number >= 0")
    return value


def _time(parsed: dict[str, Any]) -> datetime:
    text = _text(parsed, "ts")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _NotARecord(f"ts is {text!r}, not an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _inputs(parsed: dict[str, Any]) -> dict[str, float | None]:
    sent = parsed["inputs"]
    if not isinstance(sent, dict):
        raise _NotARecord(f"inputs is {sent!r}, not an object")
    wrong = [name for name, value in sent.items() if value is not None and not _is_number(value)]
    if wrong:
        raise _NotARecord(f"inputs {', '.join(wrong)} are neither numbers nor null")
    return dict(sent)
