"""A rotating file sink: when it rotates (size, UTC hour), what the closed files are called, that
their gzip holds exactly what was written, that a writer follows another's rotation, and that
several processes writing at once lose, split and repeat no line."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from api.settings import Settings
from prediction_log import PredictionLog
from rotating_log import Rotation, parse_rotation

ROWS: list[dict[str, Any]] = [{"RM": 6.5, "CHAS": 0}, {"RM": None, "CHAS": 1}]
CLOSED_NAME = re.compile(r"predictions\.(\d{8}T\d{6})(?:\.(\d+))?\.jsonl\.gz")


def at(text: str) -> float:
    """A UTC moment as the clock a log is given."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(log: PredictionLog, request_id: str, rows: int = 2) -> None:
    log.record(
        request_id=request_id, route="/predict/batch", model_version="v1",
        inputs=(ROWS * rows)[:rows], predictions=[24.5] * rows, latency_ms=1.0,
    )  # fmt: skip


def closed_files(folder: Path) -> list[Path]:
    """The gzipped closed files in the order they were closed: by time, then by N."""

    def order(path: Path) -> tuple[str, int]:
        match = CLOSED_NAME.fullmatch(path.name)
        assert match, f"{path.name} is not a closed file's name"
        return match[1], int(match[2] or 0)

    return sorted(folder.glob("*.jsonl.gz"), key=order)


def contents(folder: Path) -> list[bytes]:
    """Every file's bytes, the closed ones gunzipped, oldest first, the live file last."""
    return [gzip.decompress(path.read_bytes()) for path in closed_files(folder)] + [
        (folder / "predictions.jsonl").read_bytes()
    ]


def request_rows(chunks: list[bytes]) -> list[tuple[str, int]]:
    return [
        (line["request_id"], line["row"])
        for chunk in chunks
        for line in map(orjson.loads, chunk.splitlines())
    ]


@pytest.mark.parametrize(
    ("text", "max_bytes"),
    [("100MB", 100 * 2**20), ("1GB", 2**30), ("512 kb", 512 * 1024), ("300B", 300),
     ("1h", None), ("hourly", None), (" Hourly ", None)],
)  # fmt: skip
def test_the_accepted_forms(text: str, max_bytes: int | None) -> None:
    assert parse_rotation(text) == Rotation(max_bytes=max_bytes)


@pytest.mark.parametrize("text", ["", "weekly", "0MB", "10", "1.5GB", "-1MB", "2h", "100 MiB"])
def test_another_form_is_refused_naming_the_setting_and_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"BOSTON_API_LOG_ROTATE=.*'100MB'.*'hourly'"):
        parse_rotation(text)


def test_the_setting_is_checked_when_the_settings_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOSTON_API_LOG_SINK", str(tmp_path / "predictions.jsonl"))
    monkeypatch.setenv("BOSTON_API_LOG_ROTATE", "1GB")
    assert Settings().log_rotate == "1GB"
    monkeypatch.setenv("BOSTON_API_LOG_ROTATE", "every day")
    with pytest.raises(ValidationError, match="BOSTON_API_LOG_ROTATE='every day' is not a rot"):
        Settings()


@pytest.mark.parametrize(
    ("log_sink", "feedback_sink", "named"),
    [("stdout", None, "BOSTON_API_LOG_SINK is stdout"),
     ("x.jsonl", "stderr", "BOSTON_API_FEEDBACK_SINK is stderr")],
)  # fmt: skip
def test_rotation_of_a_stream_is_refused_as_the_container_runtimes(
    log_sink: str, feedback_sink: str | None, named: str
) -> None:
    with pytest.raises(ValidationError, match=f"{named}: there the container runtime rotates"):
        Settings(log_rotate="100MB", log_sink=log_sink, feedback_sink=feedback_sink)
    with pytest.raises(ValueError, match="container runtime"):
        PredictionLog("stdout", 1.0, "100MB")


def test_without_rotation_the_file_is_appended_to_alone(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(sink), 1.0)
    for number in range(50):
        write(log, f"r{number}")
    log.close()
    # no lock file, no closed file: exactly the sink as it always was
    assert [path.name for path in tmp_path.iterdir()] == ["predictions.jsonl"]
    assert len(sink.read_bytes().splitlines()) == 100


def test_size_rotation_keeps_each_closed_file_within_the_limit(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    clock = Clock(at("2026-12-07T22:00:00"))
    log = PredictionLog(str(sink), 1.0, "1KB", clock=clock)
    for number in range(40):
        write(log, f"r{number}")
        clock.now += 0.4  # several files closed in one second: numbered
    log.close()
    closed = closed_files(tmp_path)
    assert len(closed) >= 10
    chunks = contents(tmp_path)
    assert all(0 < len(chunk) <= 1024 for chunk in chunks[:-1])
    # every line once, in the order written, none cut at a file's edge
    assert request_rows(chunks) == [(f"r{number}", row) for number in range(40) for row in (0, 1)]
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    # the closed files were gzipped and their plain copies removed before close() returned
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".gz")) == [
        ".predictions.jsonl.lock", "predictions.jsonl",
    ]  # fmt: skip


def test_a_batch_larger_than_the_limit_goes_whole_into_a_file_of_its_own(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(sink), 1.0, "300B")
    write(log, "small", rows=1)
    write(log, "large", rows=6)
    write(log, "after", rows=1)
    log.close()
    chunks = contents(tmp_path)
    assert [{rid for rid, _ in request_rows([chunk])} for chunk in chunks] == [
        {"small"}, {"large"}, {"after"},
    ]  # fmt: skip
    assert len(chunks[1]) > 300


def test_closed_files_are_named_after_the_utc_second_they_were_closed(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    clock = Clock(at("2026-12-07T21:59:59.5"))
    log = PredictionLog(str(sink), 1.0, "100B", clock=clock)
    write(log, "a", rows=1)
    clock.now = at("2026-12-07T22:00:00.2")
    write(log, "b", rows=1)
    clock.now = at("2026-12-07T22:00:00.7")
    write(log, "c", rows=1)
    clock.now = at("2026-12-07T22:00:01.0")
    write(log, "d", rows=1)
    log.close()
    assert [path.name for path in closed_files(tmp_path)] == [
        "predictions.20261207T220000.jsonl.gz",
        "predictions.20261207T220000.1.jsonl.gz",
        "predictions.20261207T220001.jsonl.gz",
    ]
    assert [request_rows([chunk]) for chunk in contents(tmp_path)] == [
        [("a", 0)], [("b", 0)], [("c", 0)], [("d", 0)],
    ]  # fmt: skip


def test_a_name_without_a_suffix_keeps_the_stamp_last(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "predictions"), 1.0, "100B", clock=Clock(at("2026-12-07")))
    write(log, "a", rows=1)
    write(log, "b", rows=1)
    log.close()
    assert sorted(path.name for path in tmp_path.glob("*.gz")) == ["predictions.20261207T000000.gz"]


def test_hourly_rotation_at_the_first_write_of_a_new_utc_hour(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    clock = Clock(at("2026-12-07T21:10:00"))
    log = PredictionLog(str(sink), 1.0, "hourly", clock=clock)
    write(log, "a")
    clock.now = at("2026-12-07T21:59:59.9")
    write(log, "b")
    clock.now = at("2026-12-07T22:00:03")
    write(log, "c")
    clock.now = at("2026-12-07T22:59:59")
    write(log, "d")
    clock.now = at("2026-12-08T01:30:00")  # hours without a write: one file, closed at once
    write(log, "e")
    log.close()
    assert [path.name for path in closed_files(tmp_path)] == [
        "predictions.20261207T220003.jsonl.gz", "predictions.20261208T013000.jsonl.gz",
    ]  # fmt: skip
    assert [sorted({rid for rid, _ in request_rows([chunk])}) for chunk in contents(tmp_path)] == [
        ["a", "b"], ["c", "d"], ["e"],
    ]  # fmt: skip


def test_a_file_left_from_an_earlier_hour_is_closed_at_the_first_write(tmp_path: Path) -> None:
    # a restart: the live file's last write (its mtime) was in another hour, so it was begun then
    sink = tmp_path / "predictions.jsonl"
    earlier = PredictionLog(str(sink), 1.0)
    write(earlier, "before restart")
    earlier.close()
    two_hours_ago = time.time() - 7200
    os.utime(sink, (two_hours_ago, two_hours_ago))
    log = PredictionLog(str(sink), 1.0, "1h")
    write(log, "after restart")
    log.close()
    assert [sorted({rid for rid, _ in request_rows([chunk])}) for chunk in contents(tmp_path)] == [
        ["before restart"], ["after restart"],
    ]  # fmt: skip


def test_a_writer_follows_another_writers_rotation(tmp_path: Path) -> None:
    # two logs on one path hold separate files and locks, as two worker processes do
    sink = tmp_path / "predictions.jsonl"
    first = PredictionLog(str(sink), 1.0, "1KB")
    second = PredictionLog(str(sink), 1.0, "1KB")
    write(first, "first-0")
    for number in range(6):  # past 1 KB: the second one rotates the file the first has open
        write(second, f"second-{number}")
    write(first, "first-1")
    first.close()
    second.close()
    chunks = contents(tmp_path)
    assert len(chunks) >= 2
    # the first writer's later line went to the new live file, not into the renamed one
    assert ("first-1", 0) in request_rows(chunks[-1:])
    assert sorted(request_rows(chunks)) == sorted(
        (name, row) for name in ["first-0", "first-1"] + [f"second-{n}" for n in range(6)]
        for row in (0, 1)
    )  # fmt: skip


def test_a_closed_file_left_plain_by_a_killed_process_is_gzipped_at_start(tmp_path: Path) -> None:
    left = tmp_path / "predictions.20261207T210000.jsonl"
    left.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    unrelated = tmp_path / "predictions.old.jsonl"
    unrelated.write_bytes(b"kept as it is\n")
    PredictionLog(str(tmp_path / "predictions.jsonl"), 1.0, "1GB").close()
    assert not left.exists()
    packed = tmp_path / "predictions.20261207T210000.jsonl.gz"
    assert gzip.decompress(packed.read_bytes()) == b'{"a": 1}\n{"a": 2}\n'
    assert unrelated.read_bytes() == b"kept as it is\n"


def test_a_failed_gzip_leaves_the_closed_file_plain_and_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rotating_log.shutil.copyfileobj", full_disk)
    sink = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(sink), 1.0, "300B", clock=Clock(at("2026-12-07T22:00:00")))
    write(log, "a")
    write(log, "b")
    log.close()
    left = tmp_path / "predictions.20261207T220000.jsonl"
    assert request_rows([left.read_bytes()]) == [("a", 0), ("a", 1)]
    assert not list(tmp_path.glob("*.gz")) and not list(tmp_path.glob(".*.gz.*"))
    assert "could not gzip the closed log" in caplog.text


def _write_many(sink: str, writer: int, batches: int) -> None:
    log = PredictionLog(sink, 1.0, "2KB")
    for number in range(batches):
        write(log, f"w{writer}-{number}", rows=1 + number % 4)
    log.close()


def test_processes_writing_at_once_lose_split_and_repeat_no_line(tmp_path: Path) -> None:
    sink = tmp_path / "predictions.jsonl"
    writers, batches = 4, 150
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    processes = [
        context.Process(target=_write_many, args=(str(sink), writer, batches))
        for writer in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    chunks = contents(tmp_path)
    assert len(chunks) > 50
    assert all(len(chunk) <= 2048 and chunk.endswith(b"\n") for chunk in chunks[:-1])
    written = request_rows(chunks)  # every line parses: none was split
    expected = [
        (f"w{writer}-{number}", row)
        for writer in range(writers)
        for number in range(batches)
        for row in range(1 + number % 4)
    ]
    assert len(written) == len(set(written))
    assert sorted(written) == sorted(expected)
