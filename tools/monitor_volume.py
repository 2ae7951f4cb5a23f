"""How the drift and performance reports scale with the prediction log: time and peak memory.

    python -m tools.monitor_volume [--sizes 1000000 3000000 10000000] [--check-rows 200000]
        [--last 1000] [--workdir DIR] [--results docs/results/monitor-volume.md]

Writes logs itself, with a fixed seed, in the service's own line format: the raw data's tracts
shuffled and repeated, predicted by the model in models/ with its conformal intervals, requests of
one to five rows, a label for one prediction in a thousand and a few malformed lines. Each report
runs as a child process on each size; its wall time and peak resident memory (the child's own
rusage) are measured. `--last N` is timed on the largest log. A log of `--check-rows` lines is
judged both by the reports and by prediction_log's in-memory reader (the reader the reports used
before monitoring/logs.py): the verdicts must be identical. Logs go to a temporary folder that is
deleted at the end. Run with `make monitor-volume` after `make repro`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from artifact import read_card, read_profile
from conformal import Intervals
from monitoring.drift import judge
from monitoring.logs import LogReader
from monitoring.report import drift_settings
from prediction_log import Prediction, Skipped, read_records
from stages.contract import FEATURE_NAMES, TARGET
from tools import results

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw" / "HousingData.csv"
MODELS = REPO / "models"
START = datetime(2026, 12, 1, tzinfo=UTC)
SEED = 20261207
# a request every 50 ms on average: 10 million rows span about a week
_STEP_MS = 50
_LABEL_EVERY = 1000
_MALFORMED = (
    b"{not json\n",
    b"[1, 2]\n",
    b'{"event": "prediction", "model_version": "x"}\n',
    b'{"ts": "yesterday", "event": "feedback", "request_id": "r", "row": 0, "actual": 1}\n',
)
# GNU time measures a child's peak memory (Debian: the `time` package)
TIME = "/usr/bin/time"
# the floor the figures are held to (issue 22)
FLOOR_SECONDS, FLOOR_MEMORY_MB, FLOOR_LAST_SECONDS = 90.0, 1024.0, 10.0


def _tracts() -> tuple[list[bytes], list[bytes], list[float], str]:
    """Each tract's inputs as the service logs them (encoded once), the tail of its line (its
    prediction and interval), its sale price (what a label sends back), and the model version."""
    # here, not on import: the children measured (`--old`, `--read-only`) need neither
    import joblib

    from stages.ingest import read_raw, validate

    table = validate(read_raw(RAW), correct_medv=False)
    card = read_card(MODELS)
    model = joblib.load(MODELS / card["artifact"]["file"])
    predictions = model.predict(table[card["model_inputs"]].to_numpy())
    intervals = Intervals.from_dict(json.loads((MODELS / "intervals.json").read_text()))
    inputs, tails = [], []
    for row, prediction in zip(
        table[list(FEATURE_NAMES)].to_dict("records"), predictions, strict=True
    ):
        sent = {name: None if np.isnan(value) else float(value) for name, value in row.items()}
        bounds = intervals.one(float(prediction))
        tail = {
            "prediction": float(prediction),
            "lower": bounds.lower,
            "upper": bounds.upper,
            "upper_censored": bounds.upper_censored,
            "level": intervals.level,
        }
        inputs.append(orjson.dumps(sent))
        tails.append(orjson.dumps(tail)[1:])  # without its "{": it follows the inputs
    prices = [float(price) for price in table[TARGET.name]]
    return inputs, tails, prices, str(card["model_version"])


def write_log(path: Path, lines: int, seed: int = SEED) -> None:
    """`lines` prediction lines as the service writes them, plus labels and malformed lines."""
    inputs, tails, prices, version = _tracts()
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.resize(np.arange(len(inputs)), lines))
    sizes = rng.integers(1, 6, size=lines)
    gaps = rng.exponential(_STEP_MS, size=lines)
    latencies = rng.gamma(2.0, 2.0, size=lines)
    bad_at = set(rng.choice(lines, size=len(_MALFORMED), replace=False).tolist())
    head = b'"event":"prediction","request_id":"'
    with path.open("wb", buffering=1 << 22) as stream:
        written, request, clock = 0, 0, 0.0
        chunk: list[bytes] = []
        while written < lines:
            clock += gaps[request]
            ts = _stamp(clock)
            rid = f"{request:012x}-{seed % 10_000:04d}"
            route = b"/predict" if sizes[request] == 1 else b"/predict/batch"
            for row in range(min(int(sizes[request]), lines - written)):
                tract = order[written]
                chunk.append(
                    b'{"ts":"' + ts + b'",' + head + rid.encode() + b'","route":"' + route
                    + b'","model_version":"' + version.encode() + b'","latency_ms":'
                    + f"{latencies[request]:.3f}".encode() + b',"row":' + str(row).encode()
                    + b',"inputs":' + inputs[tract] + b"," + tails[tract] + b"\n"
                )  # fmt: skip
                if written % _LABEL_EVERY == 0:
                    chunk.append(_label(ts, rid, row, prices[tract]))
                if written in bad_at:
                    chunk.append(_MALFORMED[len(bad_at) - 1])
                    bad_at.discard(written)
                written += 1
            request += 1
            if len(chunk) > 50_000:
                stream.write(b"".join(chunk))
                chunk.clear()
        stream.write(b"".join(chunk))


def _label(ts: bytes, rid: str, row: int, actual: float) -> bytes:
    return orjson.dumps(
        {"ts": ts.decode(), "event": "feedback", "request_id": rid, "row": row, "actual": actual},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _stamp(milliseconds: float) -> bytes:
    moment = START + timedelta(milliseconds=milliseconds)
    return moment.isoformat(timespec="milliseconds").encode()


@dataclass(frozen=True)
class Run:
    """One child process: its wall time, peak resident memory and exit code."""

    seconds: float
    peak_mb: float
    exit_code: int
    stderr: str


def measure(command: list[str], folder: Path) -> Run:
    """Run `command` as a child and take its peak resident memory from GNU time: a process forked
    from this one (which holds the model and the raw data) would inherit this one's peak."""
    out, err, peak = folder / "stdout", folder / "stderr", folder / "peak"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        done = subprocess.run(
            [TIME, "--format", "%M", "--output", str(peak), *command],
            cwd=REPO, stdout=stdout, stderr=stderr, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    peak_kb = int(peak.read_text().split()[-1])
    return Run(seconds, peak_kb / 1024, done.returncode, err.read_text()[-2000:])


def old_verdicts(log: Path) -> dict[str, Any]:
    """The verdict of each model version as the reports reached it before monitoring/logs.py:
    every line in memory through prediction_log.read_records, sorted by time, judged at once by
    drift.judge (whose figures are scipy's on the raw values: tests/monitoring/test_drift.py)."""
    card = read_card(MODELS)
    profile = read_profile(MODELS, card)
    settings = drift_settings(REPO / "params.yaml")
    by_version: dict[str, list[Prediction]] = defaultdict(list)
    for record in read_records([log], Skipped()):
        if isinstance(record, Prediction):
            by_version[record.model_version].append(record)
    verdicts = {}
    for version, records in by_version.items():
        records.sort(key=lambda record: record.ts)
        window = {
            name: np.array([record.inputs.get(name, np.nan) for record in records], dtype=float)
            for name in profile["features"]
        }
        predictions = np.array([record.prediction for record in records])
        verdicts[version] = judge(profile, window, predictions, settings).as_dict()
    return verdicts


def read_only(log: Path) -> None:
    """What the drift report reads, without its rule: the window, then each column sorted."""
    features = list(read_profile(MODELS, read_card(MODELS))["features"])
    with LogReader([log], features) as reader:
        reader.load_window()
        for version in reader.versions():
            reader.traffic(version)
            for name in [*features, "prediction"]:
                reader.column(version, name, ordered=True)


def drift_command(log: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "monitoring.report", "--log", str(log), "--model-dir", str(MODELS),
        "--out", str(out), "--params", str(REPO / "params.yaml"), *extra,
    ]  # fmt: skip


def performance_command(log: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "monitoring.performance", "--log", str(log), "--model-dir",
        str(MODELS), "--out", str(out), "--params", str(REPO / "params.yaml"),
    ]  # fmt: skip


def check(folder: Path, lines: int) -> tuple[bool, str]:
    """The reports' verdict on a log of `lines` lines against the in-memory reader's."""
    log = folder / "check.jsonl"
    write_log(log, lines, seed=SEED + 1)
    out = folder / "check-out"
    run = measure(drift_command(log, out), folder)
    old_run = measure([sys.executable, "-m", "tools.monitor_volume", "--old", str(log)], folder)
    old = json.loads((folder / "stdout").read_text())
    new = {
        summary["model_version"]: summary["verdict"]
        for summary in (json.loads(path.read_text()) for path in out.glob("drift-*.json"))
    }
    log.unlink()
    same = new == old
    versions = ", ".join(
        f"{version}: {'drift' if verdict['drift'] else 'no drift'}, "
        f"{len(verdict['columns'])} columns, {verdict['rows']:,} rows"
        for version, verdict in sorted(old.items())
    )
    text = (
        f"Verdict on {lines:,} prediction lines, DuckDB reader vs the in-memory reader "
        f"(prediction_log.read_records): **{'identical' if same else 'DIFFERENT'}** ({versions}; "
        f"every column's statistic, p-values, PSI and shares compared). Time: "
        f"{run.seconds:.1f} s vs {old_run.seconds:.1f} s; peak memory {run.peak_mb:,.0f} MB vs "
        f"{old_run.peak_mb:,.0f} MB."
    )
    return same, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000],
        help="prediction lines of each log timed",
    )  # fmt: skip
    parser.add_argument("--check-rows", type=int, default=200_000)
    parser.add_argument("--last", type=int, default=1000, help="--last N timed on the largest")
    parser.add_argument("--workdir", type=Path, help="where the logs are written (a temp folder)")
    parser.add_argument("--old", type=Path, help=argparse.SUPPRESS)  # the child of `check`
    parser.add_argument("--read-only", type=Path, help=argparse.SUPPRESS)  # see `read_only`
    results.add_option(parser)
    args = parser.parse_args(argv)
    if args.old:
        print(json.dumps(old_verdicts(args.old)))
        return 0
    if args.read_only:
        read_only(args.read_only)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="monitor-volume-", dir=args.workdir))
    try:
        text, met = _run(args, folder)
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        folder.rmdir()
    results.publish(text, "Monitoring at volume", "tools.monitor_volume", argv, args.results)
    return 0 if met else 1


def _run(args: argparse.Namespace, folder: Path) -> tuple[str, bool]:
    same, checked = check(folder, args.check_rows)
    print(checked, flush=True)
    rows = []
    largest = max(args.sizes)
    last_run: Run | None = None
    met = same
    for size in sorted(args.sizes):
        log = folder / "predictions.jsonl"
        written = time.perf_counter()
        write_log(log, size)
        written = time.perf_counter() - written
        megabytes = log.stat().st_size / 1e6
        drift = measure(drift_command(log, folder / "out"), folder)
        performance = measure(performance_command(log, folder / "out"), folder)
        reading = measure(
            [sys.executable, "-m", "tools.monitor_volume", "--read-only", str(log)], folder
        )
        for name, run in (("drift", drift), ("performance", performance), ("reading", reading)):
            if run.exit_code not in (0, 1, 2):
                raise RuntimeError(f"the {name} report failed on {size:,} lines: {run.stderr}")
        if size == largest:
            last_run = measure(drift_command(log, folder / "out", "--last", str(args.last)), folder)
            met = met and drift.seconds <= FLOOR_SECONDS and drift.peak_mb <= FLOOR_MEMORY_MB
            met = met and last_run.seconds <= FLOOR_LAST_SECONDS
        log.unlink()
        rows.append(
            f"| {size:,} | {megabytes:,.0f} | {written:.0f} | {drift.seconds:.1f} | "
            f"{drift.peak_mb:,.0f} | {reading.seconds:.1f} | {reading.peak_mb:,.0f} | "
            f"{performance.seconds:.1f} | {performance.peak_mb:,.0f} |"
        )
        print(rows[-1], flush=True)
    assert last_run is not None
    table = "\n".join(
        [
            "| prediction lines | log MB | writing s | drift report s | drift peak MB | "
            "reading only s | reading only peak MB | performance report s | "
            "performance peak MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    verdict = "met" if met else "NOT met"
    text = f"""{checked}

{table}

`--last {args.last}` on {largest:,} lines: {last_run.seconds:.1f} s, peak
{last_run.peak_mb:,.0f} MB.

Floor (issue 22): {largest:,} lines judged in at most {FLOOR_SECONDS:.0f} s with at most
{FLOOR_MEMORY_MB:,.0f} MB, `--last {args.last}` in at most {FLOOR_LAST_SECONDS:.0f} s, the verdict
identical: **{verdict}**.

Each report runs as a child process (`python -m monitoring.report` / `monitoring.performance`);
its time is wall time and its peak the child's own maximum resident set (GNU time's `%M`).
"Reading only" is the drift report's reading without the rule: the window loaded through
monitoring/logs.py and every column pulled, sorted, one at a time, as the rule is fed. The log is
one plain file in the service's line format: the raw data's tracts shuffled and repeated, one
label per thousand predictions, {len(_MALFORMED)} malformed lines.
"""
    return text, met


if __name__ == "__main__":
    sys.exit(main())
