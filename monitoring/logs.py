"""Reading the prediction logs for the reports, with bounded memory: DuckDB over the lines.

The drift and performance reports read the service's logs here. A `--log` argument may be a file
(plain or gzip, told by its content), a folder (every `*.jsonl`, `*.json`, their `.gz` and
`*.parquet` inside it, at any depth: the service's rotated files and a log shipper's
hive-partitioned Parquet folders alike) or a glob. DuckDB's JSON reader parses the lines in
parallel, typing each field; a line that is not a record (not JSON, an unknown event, a required
field missing or not of its type) is counted and skipped, and the first few are told with their
file. Parquet files carry the same columns as the JSON lines, `inputs` as a struct of numbers.

Nothing is held in Python per line: the window (time, count, model version) is taken while the
files are scanned and kept in a DuckDB database file in a temporary folder, and the reports take
one column at a time as a numpy array. docs/monitoring.md says what this costs at volume.
"""

from __future__ import annotations

import glob
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from prediction_log import (
    FEEDBACK,
    FEEDBACK_FIELDS,
    INTERVAL_FIELDS,
    PREDICTION,
    PREDICTION_FIELDS,
    Skipped,
)

FloatArray = npt.NDArray[np.float64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
# DuckDB's own buffers; past this it writes to the temporary folder instead of growing
MEMORY_LIMIT = "256MB"
# what DuckDB may keep once the window is loaded: enough to read a column back from its file
_RELEASED_LIMIT = "32MB"
# `--last N` on a plain file: the first tail read, and the lines before a tail that may have been
# served after its first line (a batch's lines are written when the whole batch is predicted)
_TAIL_START = 1 << 20
_TAIL_BYTES_PER_LINE = 2048
_TAIL_MARGIN = timedelta(minutes=1)
# every line's first few problems are told, as prediction_log.Skipped keeps them
_SHOWN_PROBLEMS = 3
# what a JSON line's fields become: SQL types of the table every source is read into
_TYPES = {
    "ts": "TIMESTAMPTZ", "event": "VARCHAR", "request_id": "VARCHAR", "route": "VARCHAR",
    "model_version": "VARCHAR", "latency_ms": "DOUBLE", "row": "BIGINT", "prediction": "DOUBLE",
    "lower": "DOUBLE", "upper": "DOUBLE", "upper_censored": "BOOLEAN", "level": "DOUBLE",
    "actual": "DOUBLE",
}  # fmt: skip


class LogError(ValueError):
    """A `--log` argument that names no log: a missing file, an empty folder, a glob that
    matches nothing, or a file of another kind."""


@dataclass(frozen=True)
class Sources:
    """The log files an argument list names, JSON lines and Parquet apart, in the order given
    (a folder's and a glob's files sorted by name: rotated files by their time, then the live
    file)."""

    json: tuple[Path, ...]
    parquet: tuple[Path, ...]


def expand(paths: Sequence[Path | str]) -> Sources:
    """Each argument as files: a file itself, a folder's log files, a glob's matches."""
    json: list[Path] = []
    parquet: list[Path] = []
    for argument in paths:
        text = str(argument)
        path = Path(text)
        if path.is_dir():
            found = sorted(file for file in path.rglob("*") if file.is_file() and _kind(file))
            if not found:
                raise LogError(f"{path} is a folder without log files ({_suffixes()})")
        elif path.is_file():
            # a file named is a log whatever its name: Parquet by its suffix, else JSON lines
            (parquet if path.name.endswith(PARQUET_SUFFIXES) else json).append(path)
            continue
        elif glob.has_magic(text):
            found = sorted(Path(match) for match in glob.glob(text, recursive=True))
            found = [file for file in found if file.is_file()]
            if not found:
                raise LogError(f"{text} matches no file")
        else:
            raise LogError(f"{path}: no such file or folder")
        for file in found:
            kind = _kind(file)
            if kind is None:
                raise LogError(f"{file} is not a log file ({_suffixes()})")
            chosen = parquet if kind == "parquet" else json
            if file not in chosen:
                chosen.append(file)
    return Sources(tuple(json), tuple(parquet))


def _kind(file: Path) -> str | None:
    name = file.name
    if name.endswith(JSON_SUFFIXES):
        return "json"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _suffixes() -> str:
    return ", ".join(f"*{suffix}" for suffix in (*JSON_SUFFIXES, *PARQUET_SUFFIXES))


@dataclass(frozen=True)
class Traffic:
    """What the drift report says of a window's traffic, counted in SQL."""

    rows: int
    requests: int
    rows_by_route: dict[str, int]
    first: datetime | None
    last: datetime | None
    latency_ms: FloatArray  # one per request: the latency of its most recent line


@dataclass(frozen=True)
class Labelled:
    """The labelled predictions, in the order their labels arrived (a row's first label fixes
    its place, its last label its value), and the counts the performance report prints."""

    versions: list[str]
    served: list[datetime]  # when each labelled prediction was served
    predictions: FloatArray
    actuals: FloatArray
    lower: FloatArray  # NaN: served without an interval
    upper: FloatArray
    upper_censored: npt.NDArray[np.bool_]
    levels: FloatArray
    inputs: dict[str, FloatArray]  # each of the reader's `features` as sent (NaN: not sent)
    predicted_rows: int  # distinct (request id, row) among the prediction lines
    labels: int  # distinct (request id, row) among the labels
    unknown: int  # labels with no prediction in the logs
    repeated: int  # labels of a row labelled before


class LogReader:
    """The logs of `paths` as one SQL view, `lines`, with a DuckDB database in a temporary folder.

    Every line becomes a row: its `problem` when it is not a record (the rest NULL), else its
    fields typed, each input of `features` as `input_<name>`. `src` gives its file (an index into
    `files`); `line` its row number in a Parquet file, NULL for a JSON line (the parallel reader
    numbers none; `labelled` numbers the few lines whose order it needs). A file DuckDB cannot
    read (a truncated gzip, a broken Parquet file) raises LogError when it is read.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        features: Sequence[str] = (),
        *,
        memory_limit: str = MEMORY_LIMIT,
        threads: int | None = None,
    ) -> None:
        sources = expand(paths)
        self.files = (*sources.json, *sources.parquet)
        self.features = tuple(features)
        self._folder = Path(tempfile.mkdtemp(prefix="logs-"))
        # a database file, not memory: DuckDB compresses what it stores there (the inputs repeat
        # few values), so a long window is written once and small, and read back a column at a
        # time; the folder and everything in it go when the reader closes
        self.connection = duckdb.connect(str(self._folder / "window.duckdb"))
        # the folder goes even when a caller forgets close()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        settings = {
            "memory_limit": memory_limit,
            "temp_directory": str(self._folder / "spill"),
            "TimeZone": "UTC",
            # one pass in file order is what numbers the lines; the rows need no order otherwise
            "preserve_insertion_order": "true",
        }
        if threads is not None:
            settings["threads"] = str(threads)
        for name, value in settings.items():
            self.connection.execute(f"SET {name} = '{value}'")
        self._json_files = sources.json
        json_parts = [
            _json_lines(index, file, self.features) for index, file in enumerate(sources.json)
        ]
        parquet_parts = [
            self._parquet_rows(len(sources.json) + index, file)
            for index, file in enumerate(sources.parquet)
        ]
        # a view without files still has the columns, so the queries bind
        empty = (
            "SELECT "
            + ", ".join(
                ["NULL::INTEGER AS src", "NULL::BIGINT AS line", "NULL::VARCHAR AS problem"]
                + [f"NULL::{kind} AS {name}" for name, kind in _TYPES.items()]
                + [f"NULL::DOUBLE AS input_{name}" for name in self.features]
            )
            + " WHERE false"
        )
        for name, parts in (("json_lines", json_parts), ("parquet_lines", parquet_parts)):
            body = " UNION ALL BY NAME ".join(parts) if parts else empty
            self.connection.execute(f"CREATE TEMP VIEW {name} AS {body}")
        self.connection.execute(
            "CREATE TEMP VIEW lines AS SELECT * FROM json_lines UNION ALL BY NAME "
            "SELECT * FROM parquet_lines"
        )

    def close(self) -> None:
        self.connection.close()
        self._cleanup()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, query: str, parameters: list[Any] | None = None) -> None:
        """A query that reads the files: what DuckDB cannot read is the user's to fix."""
        try:
            self.connection.execute(query, parameters or [])
        except (duckdb.IOException, duckdb.InvalidInputException) as error:
            raise LogError(f"cannot read the logs: {error}") from None

    def _parquet_rows(self, index: int, file: Path) -> str:
        try:
            described = self.connection.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_quote(file)}, hive_partitioning = true)"
            ).fetchall()
        except (duckdb.IOException, duckdb.InvalidInputException) as error:
            raise LogError(f"cannot read {file}: {error}") from None
        return _parquet_rows(
            index, file, {name: kind for name, kind, *_ in described}, self.features
        )

    # -- the drift report ---------------------------------------------------------------------

    def load_window(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
        version: str | None = None,
    ) -> Skipped:
        """Keep the prediction lines of [since, until) (of `version` only, when given) in the
        table `chosen`, the most recent `last` of each model version when given; count the lines
        that are not records. One pass over the files; `last` alone on one plain file reads it
        from its end (`_load_tail`)."""
        if last is not None and since is None and until is None and self._one_plain_file():
            return self._load_tail(last, version)
        return self._load(self._window_query("lines", since, until, last, version))

    def _window_query(
        self,
        source: str,
        since: datetime | None,
        until: datetime | None,
        last: int | None,
        version: str | None,
    ) -> tuple[str, list[Any]]:
        wanted = ["event = 'prediction'", "problem IS NULL"]
        parameters: list[Any] = []
        for condition, value in (("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                wanted.append(condition)
                parameters.append(value)
        if version is not None:
            wanted.append("model_version = ?")
            parameters.append(version)
        columns = ", ".join(
            ["src", "line", "ts", "request_id", "route", "model_version", "latency_ms",
             "prediction", *(f"input_{name}" for name in self.features)]
        )  # fmt: skip
        # the problems are few: kept beside the window in the same pass, told and dropped after
        keep = f"problem IS NOT NULL OR ({' AND '.join(wanted)})"
        query = f"SELECT {columns}, problem FROM {source} WHERE {keep}"
        if last is not None:
            # the most recent by time; ties broken by file (and line, where it is known)
            query += (
                " QUALIFY problem IS NOT NULL OR row_number() OVER (PARTITION BY model_version, "
                f"problem IS NULL ORDER BY ts DESC, src DESC, line DESC) <= {int(last)}"
            )
        return query, parameters

    def _load(self, query: tuple[str, list[Any]]) -> Skipped:
        self._run("CREATE OR REPLACE TABLE chosen AS " + query[0], query[1])
        skipped = self._skipped("chosen")
        self.connection.execute("DELETE FROM chosen WHERE problem IS NOT NULL")
        self.connection.execute("CHECKPOINT")
        return skipped

    def release(self) -> None:
        """Let DuckDB drop what it cached while reading (the window is in its file): the
        reports' arrays need the room. Later queries read from the file."""
        self.connection.execute(f"SET memory_limit = '{_RELEASED_LIMIT}'")

    def _one_plain_file(self) -> bool:
        return (
            len(self.files) == 1
            and self.files[0] in self._json_files
            and (_compression(self.files[0]) == "none")
        )

    def _load_tail(self, last: int, version: str | None) -> Skipped:
        """`last` from the end of the file: the service appends its lines as it serves them, so
        the most recent are at the end. A tail is read, then one four times longer, until every
        model version found in it has `last` lines there, all served more than TAIL_MARGIN after
        the tail's first line (a line is written a request's latency after its time, so lines
        before the tail may be that much later than its first), or until the tail is the file.
        A version with no line in the tail is not reported; malformed lines are counted in the
        tail read."""
        file = self.files[0]
        size = file.stat().st_size
        length = max(_TAIL_START, last * _TAIL_BYTES_PER_LINE)
        tail = self._folder / "tail.jsonl"
        while True:
            start = max(0, size - length)
            with file.open("rb") as stream, tail.open("wb") as out:
                stream.seek(start)
                if start:
                    stream.readline()  # the line cut in two belongs to the part not read
                shutil.copyfileobj(stream, out)
            self.connection.execute(
                "CREATE OR REPLACE TEMP VIEW tail_lines AS " + _json_lines(0, tail, self.features)
            )
            skipped = self._load(self._window_query("tail_lines", None, None, last, version))
            if start == 0 or self._tail_holds(last):
                return skipped
            length *= 4

    def _tail_holds(self, last: int) -> bool:
        found = self.connection.execute(
            "SELECT count(*), bool_and(rows = ? AND earliest > "
            "(SELECT min(ts) FROM tail_lines WHERE problem IS NULL) + ?) FROM "
            "(SELECT count(*) AS rows, min(ts) AS earliest FROM chosen GROUP BY model_version)",
            [last, _TAIL_MARGIN],
        ).fetchone()
        return bool(found and found[0] and found[1])

    def versions(self) -> dict[str, int]:
        """Rows of the loaded window by model version."""
        found = self.connection.execute(
            "SELECT model_version, count(*) FROM chosen GROUP BY ALL ORDER BY model_version"
        ).fetchall()
        return {str(version): int(rows) for version, rows in found}

    def all_versions(self) -> list[str]:
        """The model versions of every prediction line, in the window or not: a second pass."""
        found = self.connection.execute(
            "SELECT DISTINCT model_version FROM lines "
            "WHERE problem IS NULL AND event = 'prediction' ORDER BY ALL"
        ).fetchall()
        return [str(version) for (version,) in found]

    def column(self, version: str, name: str, *, ordered: bool = False) -> FloatArray:
        """One column of a model version's window: an input (NaN where sent as null or left out)
        or `prediction`, in no particular order, or sorted (NaN last) when `ordered`: no figure
        of the drift rule depends on the rows' order, and its tests sort their input, which
        takes them a fraction of the time when it is sorted already."""
        field = self._field(name)
        found = self.connection.execute(
            f'SELECT "{field}" FROM chosen WHERE model_version = ?', [version]
        ).fetchnumpy()[field]
        values = _floats(found)
        if ordered:
            values.sort()  # in place: numpy's sort beats a sorted query here
        return values

    def _field(self, name: str) -> str:
        if name != "prediction" and name not in self.features:
            raise KeyError(name)
        return "prediction" if name == "prediction" else f"input_{name}"

    def traffic(self, version: str) -> Traffic:
        rows, first, last = self.connection.execute(
            "SELECT count(*), min(ts), max(ts) FROM chosen WHERE model_version = ?", [version]
        ).fetchone() or (0, None, None)
        routes = self.connection.execute(
            "SELECT route, count(*) FROM chosen WHERE model_version = ? GROUP BY ALL", [version]
        ).fetchall()
        latency = self.connection.execute(
            "SELECT arg_max(latency_ms, (ts, src, line)) AS latency FROM chosen "
            "WHERE model_version = ? GROUP BY request_id",
            [version],
        ).fetchnumpy()["latency"]
        return Traffic(
            rows=int(rows),
            requests=int(latency.size),
            rows_by_route={str(route): int(count) for route, count in sorted(routes)},
            first=first,
            last=last,
            latency_ms=_floats(latency),
        )

    # -- the performance report ---------------------------------------------------------------

    def labelled(self) -> tuple[Labelled, Skipped]:
        """The labels joined with their predictions in SQL, and the lines that are not records.

        A label names its prediction by (request id, row); when a request id or row was logged
        twice the last line counts, as in the service's own order of the files. Prediction lines
        written before rows were numbered get their order within their request in their file.
        """
        con = self.connection
        inputs = "".join(f", input_{name}" for name in self.features)
        # one parallel pass over the files: what a labelled prediction needs, and the problems
        self._run(
            "CREATE OR REPLACE TABLE kept AS SELECT src, problem, ts, request_id, row, "
            f"model_version, prediction, lower, upper, upper_censored, level{inputs} FROM lines "
            "WHERE problem IS NOT NULL OR (event = 'prediction' AND row IS NOT NULL)"
        )
        skipped = self._skipped("kept")
        con.execute("DELETE FROM kept WHERE problem IS NOT NULL")
        # the labels, and the prediction lines written before rows were numbered, in file order:
        # a serial pass that parses only the lines whose text names them
        picked = "contains(text, 'feedback') OR NOT contains(text, '\"row\"')"
        numbered = [
            _numbered_lines(index, file, picked) for index, file in enumerate(self._json_files)
        ]
        numbered.append(
            "SELECT * FROM parquet_lines WHERE event = 'feedback' OR "
            "(event = 'prediction' AND row IS NULL)"
        )
        con.execute(
            "CREATE OR REPLACE TABLE ordered AS SELECT * FROM ("
            + " UNION ALL BY NAME ".join(numbered)
            + ") WHERE problem IS NULL"
        )
        # the labels: their first line's place, their last line's value
        con.execute(
            "CREATE OR REPLACE TABLE labels AS SELECT request_id, row, "
            "min((src, line)) AS arrived, arg_max(actual, (src, line)) AS actual, "
            "count(*) - 1 AS repeats FROM ordered WHERE event = 'feedback' GROUP BY ALL"
        )
        # an unnumbered line's row is its place in its request in its file
        con.execute(
            "CREATE OR REPLACE VIEW predicted AS SELECT src, ts, request_id, row, model_version, "
            f"prediction, lower, upper, upper_censored, level{inputs} FROM kept UNION ALL "
            "SELECT src, ts, request_id, row_number() OVER (PARTITION BY src, request_id "
            "ORDER BY line) - 1 AS row, model_version, prediction, lower, upper, upper_censored, "
            f"level{inputs} FROM ordered WHERE event = 'prediction'"
        )
        # the prediction of each labelled row (the latest line, if one was logged twice): a
        # small join, however long the log
        con.execute(
            "CREATE OR REPLACE TABLE served AS "
            "SELECT request_id, row, arg_max(struct_pack(ts, model_version, prediction, "
            f"lower, upper, upper_censored, level{inputs}), (src, ts)) AS p "
            "FROM predicted SEMI JOIN labels USING (request_id, row) GROUP BY ALL"
        )
        found = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT request_id, row FROM predicted)"
        ).fetchone()
        predicted_rows = int(found[0]) if found else 0
        joined = con.execute(
            "SELECT s.p.model_version AS version, epoch_us(s.p.ts) AS served, "
            "s.p.prediction AS prediction, l.actual AS actual, s.p.lower AS lower, "
            "s.p.upper AS upper, "
            "s.p.upper_censored AS censored, s.p.level AS level"
            + "".join(f", s.p.input_{name} AS input_{name}" for name in self.features)
            + " FROM labels l JOIN served s USING (request_id, row) ORDER BY l.arrived"
        ).fetchnumpy()
        labels, repeated, known = con.execute(
            "SELECT count(*), coalesce(sum(repeats), 0), count(s.request_id) FROM labels l "
            "LEFT JOIN served s USING (request_id, row)"
        ).fetchone() or (0, 0, 0)
        has_interval = ~_missing(joined["lower"]) & ~_missing(joined["level"])
        return (
            Labelled(
                versions=[str(version) for version in joined["version"]],
                served=[_EPOCH + timedelta(microseconds=int(us)) for us in joined["served"]],
                predictions=_floats(joined["prediction"]),
                actuals=_floats(joined["actual"]),
                lower=np.where(has_interval, _floats(joined["lower"]), np.nan),
                upper=np.where(has_interval, _floats(joined["upper"]), np.nan),
                upper_censored=np.asarray(
                    np.where(has_interval, _filled(joined["censored"], False), False), dtype=bool
                ),
                levels=np.where(has_interval, _floats(joined["level"]), np.nan),
                inputs={name: _floats(joined[f"input_{name}"]) for name in self.features},
                predicted_rows=predicted_rows,
                labels=int(labels),
                unknown=int(labels) - int(known),
                repeated=int(repeated),
            ),
            skipped,
        )

    def _skipped(self, table: str) -> Skipped:
        """The problems of `table`: how many, and the first few by file. A JSON line's number is
        not known (the parallel reader numbers none): its file and its problem are told."""
        line = "line" if "line" in self._columns(table) else "NULL::BIGINT"
        count, examples = self.connection.execute(
            f"SELECT count(*), min((src, {line}, problem), {_SHOWN_PROBLEMS}) FROM {table} "
            "WHERE problem IS NOT NULL"
        ).fetchone() or (0, None)
        skipped = Skipped(count=int(count))
        for example in examples or []:
            src, number, problem = example.values() if isinstance(example, dict) else example
            where = str(self.files[src]) if number is None else f"{self.files[src]}:{number}"
            skipped.examples.append(f"{where}: {problem}")
        return skipped

    def _columns(self, table: str) -> list[str]:
        described = self.connection.execute(f"DESCRIBE {table}").fetchall()
        return [str(name) for name, *_ in described]


def _floats(values: Any) -> FloatArray:
    """A fetched column as float64, SQL NULL as NaN."""
    if isinstance(values, np.ma.MaskedArray):
        return np.ma.filled(values.astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def _missing(values: Any) -> npt.NDArray[np.bool_]:
    if isinstance(values, np.ma.MaskedArray):
        return np.ma.getmaskarray(values)
    return np.isnan(np.asarray(values, dtype=np.float64))


def _filled(values: Any, fill: Any) -> Any:
    return np.ma.filled(values, fill) if isinstance(values, np.ma.MaskedArray) else values


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# -- JSON lines -------------------------------------------------------------------------------

# every field a line may carry, and the type DuckDB's JSON reader reads it as
_FIELDS = tuple(dict.fromkeys((*PREDICTION_FIELDS, *INTERVAL_FIELDS, *FEEDBACK_FIELDS)))
_READ_AS = {**_TYPES, "ts": "VARCHAR"}


def _json_lines(index: int, file: Path, features: Sequence[str]) -> str:
    """One file's lines as rows of the `lines` view, read in parallel by DuckDB's JSON reader.

    Each field is read as its type: a value that does not convert (a price of "abc") is read as
    NULL, so that a line lacking a usable required field is counted and skipped. The reader
    numbers no line: `line` is NULL.
    """
    columns = ", ".join(f"{name}: '{_READ_AS[name]}'" for name in _FIELDS if name != "inputs")
    shape = ", ".join(f'"{name}" DOUBLE' for name in features) or '"-" DOUBLE'
    source = (
        f"read_ndjson({_quote(file)}, columns = {{{columns}, inputs: 'STRUCT({shape})'}}, "
        f"ignore_errors = true, compression = '{_compression(file)}')"
    )
    # a line that is not JSON, or not an object, comes back with every field NULL
    unread = " AND ".join(f"{name} IS NULL" for name in _FIELDS)
    return _typed(
        index,
        "NULL::BIGINT",
        f"SELECT *, {unread} AS unread FROM {source}",
        {
            **{name: name for name in _FIELDS if name not in ("ts", "inputs")},
            "ts": "TRY_CAST(ts AS TIMESTAMPTZ)",
            "inputs": "inputs",
            **{f"input_{name}": f'inputs."{name}"' for name in features},
        },
    )


def _numbered_lines(index: int, file: Path, wanted: str) -> str:
    """The lines of one file that `wanted` (a condition on their text) picks, numbered, typed as
    `_json_lines` types them. The numbering pass is serial: only its few picked lines are parsed."""
    source = (
        f"read_csv({_quote(file)}, columns = {{'text': 'VARCHAR'}}, delim = '\x01', quote = '', "
        "escape = '', header = false, auto_detect = false, strict_mode = false, "
        f"new_line = '\\n', compression = '{_compression(file)}')"
    )
    paths = ", ".join(_quote(f"$.{name}") for name in _FIELDS)
    picked = (
        f"SELECT line, CASE WHEN json_valid(text) AND json_type(text) = 'OBJECT' THEN "
        f"json_extract(text, [{paths}]) END AS f FROM (SELECT row_number() OVER () AS line, "
        f"text FROM {source}) WHERE {wanted}"
    )
    at = {name: position + 1 for position, name in enumerate(_FIELDS)}

    def value(name: str) -> str:
        kind = "TIMESTAMPTZ" if name == "ts" else _READ_AS[name]
        text = f"f[{at[name]}]" if kind != "VARCHAR" and name != "ts" else f"f[{at[name]}] ->> '$'"
        return f"TRY_CAST({text} AS {kind})"

    return _typed(
        index,
        "line",
        f"SELECT *, f IS NULL AS unread FROM ({picked})",
        {
            **{name: value(name) for name in _FIELDS if name != "inputs"},
            "inputs": f"f[{at['inputs']}]",
        },
    )


def _compression(file: Path) -> str:
    """gzip when the file is, told by its content as prediction_log's reader tells it."""
    with file.open("rb") as stream:
        return "gzip" if stream.read(2) == b"\x1f\x8b" else "none"


def _typed(index: int, line: str, source: str, value: dict[str, str]) -> str:
    """A source's typed fields checked: a row of the `lines` view each, with its problem."""

    def lacks(names: Sequence[str], what: str) -> str:
        missing = " OR ".join(f"{value[name]} IS NULL" for name in names)
        items = ", ".join(f"CASE WHEN {value[name]} IS NULL THEN '{name}' END" for name in names)
        return (
            f"WHEN {missing} THEN '{what} lacks a usable ' || "
            f"array_to_string(list_filter([{items}], lambda x: x IS NOT NULL), ', ') "
        )

    row = f"WHEN {value['row']} < 0 THEN 'row is ' || {value['row']} || ', not >= 0' "
    interval = list(INTERVAL_FIELDS)
    some = " OR ".join(f"{value[name]} IS NOT NULL" for name in interval)
    prediction = (
        f"CASE {lacks([name for name in PREDICTION_FIELDS if name != 'row'], 'prediction line')}"
        f"{row}WHEN ({some}) THEN CASE "
        f"{lacks(interval, 'a prediction line with an interval')}END END"
    )
    feedback = f"CASE {lacks(FEEDBACK_FIELDS, 'feedback line')}{row}END"
    problem = (
        "CASE WHEN unread THEN 'not JSON, or not a JSON object' "
        f"WHEN {value['event']} = '{PREDICTION}' THEN {prediction} "
        f"WHEN {value['event']} = '{FEEDBACK}' THEN {feedback} "
        f"ELSE 'event ' || coalesce({value['event']}, 'None') || "
        f"' is none of {PREDICTION}, {FEEDBACK}' END"
    )
    checked = f"SELECT *, {problem} AS problem FROM ({source})"
    # a line that is not a record keeps its problem alone
    guarded = ", ".join(
        f"CASE WHEN problem IS NULL THEN {expression} END AS {name}"
        for name, expression in value.items()
        if name != "inputs"
    )
    return f"SELECT {index} AS src, {line} AS line, problem, {guarded} FROM ({checked})"


# -- Parquet ----------------------------------------------------------------------------------


def _parquet_rows(index: int, file: Path, schema: dict[str, str], features: Sequence[str]) -> str:
    """One Parquet file's rows as rows of the `lines` view. Its columns are the JSON lines'
    fields, typed; `inputs` a struct of numbers. A row lacking a required field is counted as a
    problem, as a JSON line would be."""

    def column(name: str) -> str:
        if name not in schema:
            return f"NULL::{_TYPES[name]}"
        return f"TRY_CAST({name} AS {_TYPES[name]})"

    inputs = schema.get("inputs", "")

    def feature(name: str) -> str:
        if not inputs.startswith("STRUCT") or f"{name} " not in inputs.replace('"', ""):
            return "NULL::DOUBLE"
        return f'TRY_CAST(inputs."{name}" AS DOUBLE)'

    required_prediction = [name for name in PREDICTION_FIELDS if name not in ("row", "inputs")]
    missing_prediction = " OR ".join(f"{column(name)} IS NULL" for name in required_prediction)
    missing_feedback = " OR ".join(f"{column(name)} IS NULL" for name in FEEDBACK_FIELDS)
    problem = (
        f"CASE WHEN {column('event')} = '{PREDICTION}' THEN CASE WHEN {missing_prediction} "
        f"THEN 'a prediction row lacks a field or holds one of the wrong type' END "
        f"WHEN {column('event')} = '{FEEDBACK}' THEN CASE WHEN {missing_feedback} "
        "THEN 'a feedback row lacks a field or holds one of the wrong type' END "
        f"ELSE 'event ' || coalesce({column('event')}, 'None') || ' is none of {PREDICTION}, "
        f"{FEEDBACK}' END"
    )
    selected = [
        f"{index} AS src",
        "file_row_number + 1 AS line",
        f"{problem} AS problem",
        *(f"{column(name)} AS {name}" for name in _TYPES),
        *(f"{feature(name)} AS input_{name}" for name in features),
    ]
    return (
        f"SELECT {', '.join(selected)} FROM read_parquet({_quote(file)}, "
        "hive_partitioning = true, file_row_number = true)"
    )
