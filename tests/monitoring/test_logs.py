"""monitoring/logs.py: the reports' reader of the prediction logs, on tiny logs written here.

Files, gzip (told by content), folders with rotated files, globs, a hive-partitioned Parquet
folder; malformed lines counted; the window by time, by count per model version and by version;
labels joined with their predictions; and the same answers with a memory limit small enough to
make DuckDB spill.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monitoring.logs import LogError, LogReader, expand

START = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
FEATURES = ("CRIM", "RM")


def prediction(
    minute: int, version: str = "v1", request: str | None = None, row: int | None = 0, **more: Any
) -> dict[str, Any]:
    line = {
        "ts": (START + timedelta(minutes=minute)).isoformat(timespec="milliseconds"),
        "event": "prediction", "request_id": request or f"r{minute}", "route": "/predict",
        "model_version": version, "latency_ms": 1.0 + minute, "row": row,
        "inputs": {"CRIM": 0.1 * minute, "RM": 6.0, "B": 396.9}, "prediction": 20.0 + minute,
    }  # fmt: skip
    if row is None:
        del line["row"]
    return {**line, **more}


def label(request: str, row: int, actual: float, minute: int = 90) -> dict[str, Any]:
    ts = (START + timedelta(minutes=minute)).isoformat()
    return {"ts": ts, "event": "feedback", "request_id": request, "row": row, "actual": actual}


def write(path: Path, lines: list[Any]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as stream:
            stream.write(text)
    else:
        path.write_text(text)
    return path


def window(paths: list[Any], **chosen: Any) -> dict[str, list[float]]:
    """Each model version's predictions in the window, sorted."""
    with LogReader(paths, FEATURES) as reader:
        reader.load_window(**chosen)
        return {
            version: sorted(reader.column(version, "prediction").tolist())
            for version in reader.versions()
        }


def test_malformed_lines_are_counted_and_skipped_with_their_problem(tmp_path: Path) -> None:
    log = write(
        tmp_path / "p.jsonl",
        [
            prediction(0),
            "{not json",
            "[1, 2]",
            "",  # a blank line is no line at all
            {"event": "prediction", "model_version": "x"},
            {**prediction(1), "latency_ms": "slow"},
            {**prediction(2), "ts": "yesterday"},
            {"ts": START.isoformat(), "event": "click"},
            prediction(3, lower=18.0),  # an interval without its other bounds
            prediction(4),
        ],
    )
    with LogReader([log], FEATURES) as reader:
        skipped = reader.load_window()
        assert reader.versions() == {"v1": 2}
    assert skipped.count == 7
    problems = " | ".join(skipped.examples)
    assert len(skipped.examples) == 3 and str(log) in problems
    # the first few, by file then problem: every one names what is wrong
    assert "event click is none of prediction, feedback" in problems
    assert "not JSON, or not a JSON object" in problems
    with LogReader([log], FEATURES) as reader:
        everything = reader.connection.execute(
            "SELECT problem FROM lines WHERE problem IS NOT NULL ORDER BY ALL"
        ).fetchall()
    assert [problem for (problem,) in everything] == sorted(
        [
            "a prediction line with an interval lacks a usable upper, upper_censored, level",
            "event click is none of prediction, feedback",
            "not JSON, or not a JSON object",
            "not JSON, or not a JSON object",
            "prediction line lacks a usable latency_ms",
            "prediction line lacks a usable ts",
            "prediction line lacks a usable ts, request_id, route, latency_ms, inputs, prediction",
        ]
    )


def test_inputs_left_out_or_null_are_missing_and_others_are_not_inputs(tmp_path: Path) -> None:
    line = prediction(0)
    line["inputs"] = {"RM": None}
    log = write(tmp_path / "p.jsonl", [line])
    with LogReader([log], FEATURES) as reader:
        reader.load_window()
        assert np.isnan(reader.column("v1", "CRIM")[0]) and np.isnan(reader.column("v1", "RM")[0])
        with pytest.raises(KeyError):
            reader.column("v1", "B")  # sent, but not a feature asked for


def test_gzip_is_told_by_content_and_a_named_file_needs_no_suffix(tmp_path: Path) -> None:
    packed = write(tmp_path / "old.jsonl.gz", [prediction(0)])
    unnamed = tmp_path / "archive"
    unnamed.write_bytes(packed.read_bytes())
    plain = write(tmp_path / "calm", [prediction(1)])
    assert window([packed, unnamed, plain]) == {"v1": [20.0, 20.0, 21.0]}


def test_a_folder_reads_the_live_file_its_rotated_files_and_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    write(folder / "predictions.20261207T200000.jsonl.gz", [prediction(0)])
    write(folder / "predictions.20261207T200000.1.jsonl.gz", [prediction(1)])
    write(folder / "predictions.jsonl", [prediction(2)])
    write(folder / "notes.txt", ["not a log"])
    parquet_rows(folder / "shipped" / "date=2026-12-07" / "part-0.parquet", [prediction(3)])
    found = expand([folder])
    assert [path.name for path in found.json] == [
        "predictions.20261207T200000.1.jsonl.gz",
        "predictions.20261207T200000.jsonl.gz",
        "predictions.jsonl",
    ]
    assert [path.name for path in found.parquet] == ["part-0.parquet"]
    assert window([folder]) == {"v1": [20.0, 21.0, 22.0, 23.0]}


def test_a_glob_names_its_matches(tmp_path: Path) -> None:
    write(tmp_path / "predictions.20261207T200000.jsonl.gz", [prediction(0)])
    write(tmp_path / "predictions.jsonl", [prediction(1)])
    write(tmp_path / "other.jsonl", [prediction(2)])
    assert window([str(tmp_path / "predictions*")]) == {"v1": [20.0, 21.0]}


def test_what_names_no_log_is_an_error_that_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogError, match="no such file or folder"):
        expand([tmp_path / "missing.jsonl"])
    with pytest.raises(LogError, match="folder without log files"):
        expand([tmp_path / "empty"])
    with pytest.raises(LogError, match="matches no file"):
        expand([str(tmp_path / "*.jsonl")])


def test_a_file_duckdb_cannot_read_is_an_error_that_names_it(tmp_path: Path) -> None:
    packed = write(tmp_path / "p.jsonl.gz", [prediction(m) for m in range(2_000)])
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with LogReader([cut], FEATURES) as reader, pytest.raises(LogError, match="cannot read"):
        reader.load_window()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(LogError, match=r"broken\.parquet"):
        LogReader([broken], FEATURES)


def parquet_rows(path: Path, lines: list[dict[str, Any]]) -> Path:
    """Lines as a log shipper writes them to Parquet: the same columns, typed; `ts` a UTC
    timestamp, `inputs` a struct of numbers."""
    columns: dict[str, list[Any]] = {name: [line.get(name) for line in lines] for name in lines[0]}
    columns["ts"] = [datetime.fromisoformat(text) for text in columns["ts"]]
    inputs = pa.array(columns.pop("inputs"), pa.struct([(n, pa.float64()) for n in FEATURES]))
    table = pa.table({**columns, "inputs": inputs})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_a_hive_partitioned_parquet_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bucket"
    parquet_rows(folder / "date=2026-12-07" / "part-0.parquet", [prediction(0), prediction(1)])
    parquet_rows(
        folder / "date=2026-12-08" / "part-0.parquet",
        [prediction(24 * 60, version="v2"), prediction(24 * 60 + 1, version="v2")],
    )
    feedback = [label("r0", 0, 19.0), label("r1", 0, 25.0), label("r1", 0, 24.0)]
    table = pa.table(
        {
            "ts": [datetime.fromisoformat(line["ts"]) for line in feedback],
            "event": [line["event"] for line in feedback],
            "request_id": [line["request_id"] for line in feedback],
            "row": [line["row"] for line in feedback],
            "actual": [line["actual"] for line in feedback],
        }
    )
    pq.write_table(table, folder / "date=2026-12-07" / "part-1.parquet")
    with LogReader([folder], FEATURES) as reader:
        assert reader.load_window(since=START + timedelta(minutes=1)).count == 0
        assert reader.versions() == {"v1": 1, "v2": 2}
        assert reader.column("v1", "CRIM").tolist() == [pytest.approx(0.1)]
        labelled, skipped = reader.labelled()
    assert skipped.count == 0
    assert labelled.actuals.tolist() == [19.0, 24.0]  # r1's last label counts
    assert labelled.repeated == 1 and labelled.predicted_rows == 4


def test_the_window_by_time_and_by_version(tmp_path: Path) -> None:
    log = write(tmp_path / "p.jsonl", [prediction(m, "v1" if m % 2 else "v2") for m in range(6)])
    assert window(
        [log], since=START + timedelta(minutes=2), until=START + timedelta(minutes=5)
    ) == {
        "v1": [23.0],
        "v2": [22.0, 24.0],
    }
    assert window([log], version="v1") == {"v1": [21.0, 23.0, 25.0]}


def test_last_is_the_most_recent_lines_of_each_version_by_time(tmp_path: Path) -> None:
    # written out of time order, two versions: the last 2 of each by their own time
    minutes = [5, 0, 9, 3, 7, 1, 8, 2]
    log = write(tmp_path / "p.jsonl", [prediction(m, "v1" if m < 5 else "v2") for m in minutes])
    assert window([log], last=2) == {"v1": [22.0, 23.0], "v2": [28.0, 29.0]}


def test_labels_joined_with_their_predictions_in_arrival_order(tmp_path: Path) -> None:
    log = write(
        tmp_path / "p.jsonl",
        [
            prediction(0, request="a", row=0, lower=15.0, upper=25.0, upper_censored=False,
                       level=0.9),
            prediction(0, request="a", row=1, lower=16.0, upper=26.0, upper_censored=False,
                       level=0.9),
            # written before rows were numbered: their place in their request is their row
            prediction(1, request="old", row=None),
            prediction(2, request="old", row=None, version="v0"),
            label("a", 1, 30.0),
            label("old", 1, 22.0),
            label("a", 0, 21.0),
            label("a", 1, 23.0),  # a second label of a/1: the last counts, the first its place
            label("nobody", 0, 20.0),
        ],
    )  # fmt: skip
    with LogReader([log]) as reader:
        labelled, skipped = reader.labelled()
    assert skipped.count == 0
    assert labelled.versions == ["v1", "v0", "v1"]
    assert labelled.actuals.tolist() == [23.0, 22.0, 21.0]
    assert labelled.predictions.tolist() == [20.0, 22.0, 20.0]
    assert labelled.served[1] == START + timedelta(minutes=2)
    assert labelled.lower.tolist()[0] == 16.0 and np.isnan(labelled.lower[1])
    assert (labelled.predicted_rows, labelled.labels) == (4, 4)
    assert (labelled.unknown, labelled.repeated) == (1, 1)


def test_a_small_memory_limit_gives_the_same_answers(tmp_path: Path) -> None:
    """The window is written to DuckDB's database file and read back a column at a time; with a
    memory limit below the log's size DuckDB keeps to it and the answers do not change."""
    rng = np.random.default_rng(0)
    lines = [
        prediction(int(m), "v1" if m % 3 else "v2", request=f"q{i // 3}", row=i % 3)
        for i, m in enumerate(rng.integers(0, 10_000, size=280_000))
    ]
    log = write(tmp_path / "p.jsonl", lines)
    assert log.stat().st_size > 48 * 2**20

    def answers(**limits: Any) -> tuple[dict[str, int], list[float], int, int]:
        with LogReader([log], FEATURES, **limits) as reader:
            reader.load_window(since=START + timedelta(minutes=100))
            stored = (reader._folder / "window.duckdb").stat().st_size
            column = reader.column("v1", "CRIM", ordered=True).tolist()
            return reader.versions(), column, reader.traffic("v1").requests, stored > 0

    small = answers(memory_limit="48MB", threads=1)
    assert small == answers() and small[3]


def test_last_on_a_long_plain_file_reads_its_end_and_agrees_with_the_whole(
    tmp_path: Path,
) -> None:
    # a minute apart, in time order as the service appends them: far more than the first tail
    lines = [prediction(m, "v1", request=f"q{m}") for m in range(8_000)]
    plain = write(tmp_path / "p.jsonl", lines)
    packed = write(tmp_path / "p.jsonl.gz", lines)  # gzip: read whole, no end to seek to
    from_the_end = window([plain], last=3_000)
    assert from_the_end == window([packed], last=3_000)
    assert from_the_end["v1"][0] == 20.0 + 5_000
