"""The prediction log's record: its fields, its writer and its reader.

The service writes one JSON object per line with `PredictionLog`; the drift and performance
reports read the lines back with `read_records`, so both judge the same lines by the same rules.
A file sink may rotate (`parse_rotation`): closed files are renamed beside it and gzipped.
Standard library, orjson and conformal.py: the serving image carries these beside artifact.py.
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import itertools
import logging
import os
import random
import re
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from conformal import Interval

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

logger = logging.getLogger(__name__)

ROTATE_SETTING = "BOSTON_API_LOG_ROTATE"
ROTATE_FORMS = (
    "a size such as '100MB' or '1GB' (a whole number of B, KB, MB or GB, each unit 1024 times "
    "the one before), or '1h' or 'hourly'"
)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
# gzip's own default: close to level 9's size at a fraction of its time
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class Rotation:
    """When a file sink is closed and a new one begun: before a write would take it past
    `max_bytes`, or (`max_bytes` None) at the first write in a new UTC hour."""

    max_bytes: int | None


def parse_rotation(text: str) -> Rotation:
    """BOSTON_API_LOG_ROTATE's value; ValueError names the variable and the accepted forms."""
    spoken = text.strip().upper()
    if spoken in ("1H", "HOURLY"):
        return Rotation(max_bytes=None)
    size = re.fullmatch(r"(\d+)\s*(B|KB|MB|GB)", spoken)
    if size and int(size[1]) > 0:
        return Rotation(max_bytes=int(size[1]) * _SIZE_UNITS[size[2]])
    raise ValueError(f"{ROTATE_SETTING}={text!r} is not a rotation; write {ROTATE_FORMS}")


class PredictionLog:
    """One JSON line per predicted row, and the labels' lines beside them.

    Lines are written straight to the sink under a lock (batch lines are written from a worker
    thread) and flushed at once: a line is only useful to a log shipper once written. With
    `rotate` (parse_rotation's forms) a file sink is written by `_RotatingFile` instead; without
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
            None if rotate is None else _RotatingFile(Path(sink), parse_rotation(rotate), clock)
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


class _RotatingFile:
    """A log file that several worker processes append to, rotated by whichever of them first
    writes past the limit.

    Each write takes an exclusive flock on `.<name>.lock` beside the file, reopens the file if
    another process has rotated it since (the path no longer names the file this one has open),
    rotates it when due (renames it to its closed name and starts a new one), writes the lines
    with one write, and lets go. So a line is never split across files, lost in a renamed file
    or written twice. The renamed file is gzipped after the lock is released, on a thread of
    its own (`_compress`): nobody appends to it any more.
    """

    def __init__(self, path: Path, rotation: Rotation, clock: Callable[[], float]) -> None:
        self.path = path
        self.rotation = rotation
        self._clock = clock
        self._thread_lock = threading.Lock()  # flock excludes processes, not this one's threads
        lock_path = path.with_name(f".{path.name}.lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd = -1
        self._started_hour = -1
        self._compressing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-gzip")
        # closed files a process stopped before gzipping (killed mid-way): gzipped now
        for plain in _closed_plain_files(path):
            self._compressing.submit(_compress, plain)

    def write(self, lines: bytes) -> None:
        closed = None
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                size = self._live_size()
                now = self._clock()
                if size and self._due(size, len(lines), now):
                    closed = self._rotate(now)
                    size = 0
                if size == 0:
                    self._started_hour = _hour(now)
                _write_all(self._fd, lines)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if closed is not None:
            self._compressing.submit(_compress, closed)

    def close(self) -> None:
        self._compressing.shutdown(wait=True)
        with self._thread_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)

    def _live_size(self) -> int:
        """The size of the file the path names, reopened first if it is not the one open here."""
        if self._fd >= 0:
            try:
                live = os.stat(self.path)
            except FileNotFoundError:  # removed by hand: begun again
                live = None
            mine = os.fstat(self._fd)
            if live is not None and (live.st_ino, live.st_dev) == (mine.st_ino, mine.st_dev):
                return mine.st_size
            os.close(self._fd)
        self._fd = os.open(self.path, _APPEND, 0o644)
        opened = os.fstat(self._fd)
        # Every line of a file is written in the hour it was begun in (a write in another hour
        # rotates it first), so the hour of its last write, its mtime, is its starting hour. An
        # empty file is given the hour of its first write (write()).
        self._started_hour = _hour(opened.st_mtime)
        return opened.st_size

    def _due(self, size: int, incoming: int, now: float) -> bool:
        if self.rotation.max_bytes is not None:
            # before the write that would pass the limit: a closed file stays within it unless
            # one batch alone is larger
            return size + incoming > self.rotation.max_bytes
        return _hour(now) != self._started_hour

    def _rotate(self, now: float) -> Path:
        closed = self._closed_name(now)
        os.rename(self.path, closed)  # under the lock: no process appends to it after this
        os.close(self._fd)
        self._fd = os.open(self.path, _APPEND, 0o644)
        return closed

    def _closed_name(self, now: float) -> Path:
        """`<stem>.<UTC time of closing>[.N]<suffix>`, N counting files closed in one second."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        for n in itertools.count():
            name = f"{self.path.stem}.{stamp}{f'.{n}' if n else ''}{self.path.suffix}"
            closed = self.path.with_name(name)
            if not closed.exists() and not closed.with_name(f"{name}.gz").exists():
                return closed
        raise AssertionError("unreachable")


def _closed_plain_files(path: Path) -> list[Path]:
    """The closed files of the log at `path` not gzipped yet, by name."""
    pattern = re.compile(
        rf"{re.escape(path.stem)}\.\d{{8}}T\d{{6}}(\.\d+)?{re.escape(path.suffix)}"
    )
    return sorted(
        found
        for found in path.parent.iterdir()
        if pattern.fullmatch(found.name) and found.is_file()
    )


def _compress(plain: Path) -> None:
    """`plain` gzipped to `<plain>.gz`, then removed. The .gz appears only whole (written under
    a hidden temporary name, synced, renamed) and the plain file is removed only after, so a
    crash at any moment leaves every line in one of the two; a plain file left behind is
    gzipped when the service starts again. Two processes gzipping the same file (one of them
    that restart) write the same .gz."""
    packed = plain.with_name(f"{plain.name}.gz")
    partial = plain.with_name(f".{plain.name}.gz.{os.getpid()}-{threading.get_ident()}")
    try:
        with plain.open("rb") as source, partial.open("wb") as raw:
            with gzip.GzipFile(plain.name, "wb", _GZIP_LEVEL, raw) as target:
                shutil.copyfileobj(source, target, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, packed)
        plain.unlink(missing_ok=True)
    except FileNotFoundError:  # another process gzipped and removed it first
        partial.unlink(missing_ok=True)
    except OSError:
        # a full disk, say: the lines stay in the plain file, readable, and the next start
        # tries again; the error goes to the server's log
        logger.exception("could not gzip the closed log %s; it stays as it is", plain)
        partial.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _hour(moment: float) -> int:
    """Whole UTC hours since the epoch."""
    return int(moment // 3600)


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
