"""The drift report: the service's prediction log against the model's reference profile.

    python -m monitoring.report --log predictions.jsonl [more.jsonl.gz ...] [--out DIR]
        [--since ISO --until ISO | --last N] [--min-rows N] [--alpha A] [--push URL]

Reads the service's prediction lines through monitoring/logs.py (files, folders, globs, gzip and
Parquet; malformed lines are counted and skipped with a warning) with bounded memory: the window
is filtered while the files are scanned and each column is judged on its own. It splits the lines
by `model_version` and judges each version's window against the reference profile beside the
model card: per input KS or chi-square, Benjamini-Hochberg over all inputs and the prediction.
Writes a JSON summary and a self-contained HTML page (monitoring/page.py) per window, prints
what moved and what to do next, and exits 0 (no drift), 1 (drift found) or 2 (nothing could be
judged). `drift_status` gives the same verdict to a caller.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import yaml

from artifact import ArtifactError, read_card, read_profile
from monitoring import page
from monitoring.drift import PREDICTION, DriftSettings, FloatArray, Verdict, judge_columns
from monitoring.logs import LogError, LogReader, Traffic
from prediction_log import Prediction

NO_DRIFT, DRIFT, CANNOT_RUN = 0, 1, 2
DriftStatus = Literal["drift", "no drift", "cannot judge"]
EXIT_CODES: dict[DriftStatus, int] = {
    "no drift": NO_DRIFT,
    "drift": DRIFT,
    "cannot judge": CANNOT_RUN,
}
PUSH_JOB = "boston_housing_drift"
PARAMS = Path("params.yaml")


class WindowColumns(Mapping[str, FloatArray]):
    """A model version's window, each profiled input and the prediction, read from the logs'
    DuckDB table when asked for: one column in memory at a time, however long the window."""

    def __init__(self, reader: LogReader, version: str, names: Sequence[str]) -> None:
        self._reader, self._version = reader, version
        self._names = [*names, PREDICTION]

    def __getitem__(self, name: str) -> FloatArray:
        if name not in self._names:
            raise KeyError(name)
        return self._reader.column(self._version, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def window_arrays(
    records: Sequence[Prediction], profile: dict[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Records held in memory as the window judge takes: each profiled input as a float array
    (NaN: sent as null or left out), and the predictions."""
    inputs = {
        name: np.array([record.inputs.get(name, np.nan) for record in records], dtype=float)
        for name in profile["features"]
    }
    return inputs, np.array([record.prediction for record in records])


def traffic(seen: Traffic | Sequence[Prediction]) -> dict[str, Any]:
    """Request volume and latency percentiles: one latency per request, not per row. `seen` is
    the figures logs.py counted in SQL, or records held in memory."""
    figures = seen if isinstance(seen, Traffic) else _counted(seen)
    percentiles = {
        f"p{q}": round(float(np.percentile(figures.latency_ms, q)), 3)
        if figures.latency_ms.size
        else None
        for q in (50, 90, 99)
    }
    return {
        "rows": figures.rows,
        "requests": figures.requests,
        "rows_by_route": figures.rows_by_route,
        "first": figures.first.astimezone(UTC).isoformat() if figures.first else None,
        "last": figures.last.astimezone(UTC).isoformat() if figures.last else None,
        "latency_ms": percentiles,
    }


def _counted(records: Sequence[Prediction]) -> Traffic:
    latency = {record.request_id: record.latency_ms for record in records}
    routes: dict[str, int] = defaultdict(int)
    for record in records:
        routes[record.route] += 1
    moments = [record.ts for record in records]
    return Traffic(
        rows=len(records),
        requests=len(latency),
        rows_by_route=dict(sorted(routes.items())),
        first=min(moments) if moments else None,
        last=max(moments) if moments else None,
        latency_ms=np.array(list(latency.values()), dtype=np.float64),
    )


def summarise(
    version: str,
    seen: Traffic | Sequence[Prediction],
    verdict: Verdict | None,
    reason: str | None,
) -> dict[str, Any]:
    if verdict is None:
        status = "not judged"
    elif verdict.too_small:
        status = "too small"
    else:
        status = "drift" if verdict.drift else "no drift"
    return {
        "model_version": version,
        "status": status,
        "reason": reason,
        "traffic": traffic(seen),
        "verdict": verdict.as_dict() if verdict is not None else None,
    }


def advice(summary: dict[str, Any]) -> list[str]:
    """What an operator reads on the console: the verdict, what moved, and what to do next."""
    version, status = summary["model_version"], summary["status"]
    rows = summary["traffic"]["rows"]
    if status != "drift":
        detail = f" ({summary['reason']})" if summary["reason"] else ""
        return [f"model {version}: {status} over {rows} rows{detail}"]
    # the page's own words for what moved and what to do (monitoring/page.py)
    lines = [f"model {version}: DRIFT over {rows} rows. Columns that moved:"]
    lines += [f"  {line}" for line in page.moved_lines(summary)]
    return lines + [f"Next: {step}" for step in page.next_steps(summary)]


def push(url: str, summary: dict[str, Any]) -> None:
    """The verdict and p-values as gauges on a Pushgateway, the convention for batch jobs."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    verdict = summary["verdict"]
    Gauge("drift_detected", "1 when the last report found drift", registry=registry).set(
        1 if summary["status"] == "drift" else 0
    )
    Gauge("drift_window_rows", "Rows in the judged window", registry=registry).set(
        summary["traffic"]["rows"]
    )
    Gauge(
        "drift_last_run_timestamp_seconds", "When the report ran", registry=registry
    ).set_to_current_time()
    per_column = {
        "drift_p_value": ("p_adjusted", "Benjamini-Hochberg adjusted p-value per column"),
        "drift_statistic": ("statistic", "KS or chi-square statistic per column"),
        "drift_psi": ("psi", "Population stability index per column (severity)"),
        "drift_out_of_range_share": ("out_of_range_share", "Share outside the reference range"),
    }
    for metric, (key, documentation) in per_column.items():
        gauge = Gauge(metric, documentation, ["column"], registry=registry)
        for column in verdict["columns"] if verdict else []:
            if column.get(key) is not None:
                gauge.labels(column["column"]).set(column[key])
    push_to_gateway(
        url,
        job=PUSH_JOB,
        registry=registry,
        grouping_key={"model_version": summary["model_version"]},
    )


def drift_status(
    logs: Sequence[Path],
    model_dir: Path,
    out: Path,
    *,
    settings: DriftSettings | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    push_to: str | None = None,
) -> DriftStatus:
    """Judge each model version's window of `logs` and write its report to `out`.

    "drift" when a judged window drifted, "no drift" when one was judged without, "cannot judge"
    when none could be (no lines, too few rows, another model's profile, an unusable artifact).
    `settings` default to params.yaml's `monitoring` block.
    """
    try:
        settings = settings or drift_settings(PARAMS)
        card = read_card(model_dir)
        profile = read_profile(model_dir, card)
    except (ArtifactError, ValueError, OSError) as error:
        print(f"report: {error}", file=sys.stderr)
        return "cannot judge"
    try:
        reader = LogReader(logs, list(profile["features"]))
    except (LogError, OSError) as error:
        print(f"report: {error}", file=sys.stderr)
        return "cannot judge"
    with reader:
        try:
            skipped = reader.load_window(since=since, until=until, last=last)
        except LogError as error:
            print(f"report: {error}", file=sys.stderr)
            return "cannot judge"
        skipped.warn("report")
        rows_by_version = reader.versions()
        if since is not None or until is not None:
            # a version with lines, none of them in the window, is still reported (0 rows)
            rows_by_version = {**dict.fromkeys(reader.all_versions(), 0), **rows_by_version}
        if not rows_by_version:
            print("report: no prediction lines in the log(s); nothing to judge", file=sys.stderr)
            return "cannot judge"
        statuses = [
            _report_version(reader, version, rows, profile, model_dir, out, settings, push_to)
            for version, rows in sorted(rows_by_version.items())
        ]
    print(f"report: written to {out}/")
    if "drift" in statuses:
        return "drift"
    return "no drift" if "no drift" in statuses else "cannot judge"


def _report_version(
    reader: LogReader,
    version: str,
    rows: int,
    profile: dict[str, Any],
    model_dir: Path,
    out: Path,
    settings: DriftSettings,
    push_to: str | None,
) -> str:
    """One model version's window judged, written, told and pushed; its status."""
    verdict, reason = None, None
    window: Mapping[str, FloatArray] = {}
    if version != profile["model_version"]:
        reason = (
            f"the reference profile in {model_dir} is for model "
            f"{profile['model_version']}; point --model-dir at this model's folder"
        )
    else:
        window = WindowColumns(reader, version, list(profile["features"]))
        reader.release()
        verdict = judge_columns(
            profile, lambda name: reader.column(version, name, ordered=True), rows, settings
        )
        if verdict.too_small:
            reason = f"{rows} rows, fewer than the minimum of {settings.min_rows}"
    summary = summarise(version, reader.traffic(version), verdict, reason)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"drift-{version}.json").write_text(json.dumps(summary, indent=2) + "\n")
    # the page reads the window a column at a time (window[name]): the mapping serves it
    html_page = page.render(summary, profile, cast(dict[str, Any], window))
    (out / f"drift-{version}.html").write_text(html_page)
    print("\n".join(advice(summary)))
    if push_to and verdict is not None:
        push(push_to, summary)
    return str(summary["status"])


def drift_settings(
    params: Path, alpha: float | None = None, min_rows: int | None = None
) -> DriftSettings:
    """params.yaml's `monitoring` block, with the command line's overrides."""
    block = (yaml.safe_load(params.read_text()) or {}).get("monitoring", {})
    missing = [f"monitoring.{key}" for key in ("alpha", "min_rows") if key not in block]
    if missing:
        raise ValueError(f"{params} lacks {', '.join(missing)}")
    return DriftSettings(
        alpha=block["alpha"] if alpha is None else alpha,
        min_rows=block["min_rows"] if min_rows is None else min_rows,
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        settings = drift_settings(args.params, args.alpha, args.min_rows)
    except (ValueError, OSError) as error:
        print(f"report: {error}", file=sys.stderr)
        return CANNOT_RUN
    status = drift_status(
        args.log, args.model_dir, args.out, settings=settings,
        since=args.since, until=args.until, last=args.last, push_to=args.push,
    )  # fmt: skip
    return EXIT_CODES[status]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log",
        type=Path,
        nargs="+",
        required=True,
        help="prediction logs: files (.gz too), folders or globs",
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports/monitoring"))
    parser.add_argument("--since", type=parse_time, help="ISO time; the window starts here")
    parser.add_argument("--until", type=parse_time, help="ISO time; the window ends before this")
    parser.add_argument("--last", type=int, help="only the most recent N rows of each model")
    parser.add_argument("--min-rows", type=int, help="overrides monitoring.min_rows")
    parser.add_argument("--alpha", type=float, help="overrides monitoring.alpha")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--push", metavar="URL", help="a Prometheus Pushgateway to push to")
    args = parser.parse_args(argv)
    if args.last is not None and (args.since or args.until):
        parser.error("--last cannot be combined with --since/--until")
    if args.last is not None and args.last < 1:
        parser.error(f"--last must be a whole number >= 1, got {args.last}")
    return args


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
