"""Realised performance: the served predictions joined with the labels clients sent back.

    python -m monitoring.performance --log predictions.jsonl [labels.jsonl ...] [--out DIR]
        [--window 1d] [--min-rows N] [--model-dir models]

Reads the service's JSON lines (gzip allowed): its predictions and the labels of POST /feedback,
wherever each was written. A label names its prediction by request id and row; the last label of
a row counts, the others are counted as repeated, and labels without a prediction in the logs are
counted as unknown. The joined rows are grouped by `model_version` and by windows of the
prediction's time; each window gets its RMSE and MAE with 95% bootstrap intervals, next to the
model card's test figures.

A window of the card's model is "degraded" when the whole interval of its RMSE lies above the
card's interval of the test RMSE, judged only with at least `min_rows` labelled rows
(params.yaml monitoring.performance_min_rows). monitoring/degradation.py measures the rule's
false alarms and detections. Writes performance.json and prints a table; exits 0 when the latest
judged window of the card's model is not degraded, 1 when it is, and 2 when none could be judged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from artifact import ArtifactError, read_card
from monitoring.degradation import RESAMPLES, degraded, rmse_interval
from monitoring.report import parse_time, read_lines

NOT_DEGRADED, DEGRADED, CANNOT_RUN = 0, 1, 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# the windows' bootstrap intervals are seeded: the same logs give the same report
_SEED = 0


@dataclass
class Served:
    ts: datetime
    model_version: str
    prediction: float
    # the house as the client sent it: what a label turns into a training row
    inputs: dict[str, Any]


@dataclass
class Logs:
    """Predictions and labels by (request id, row), and what did not fit."""

    predictions: dict[tuple[str, int], Served] = field(default_factory=dict)
    labels: dict[tuple[str, int], float] = field(default_factory=dict)
    repeated: int = 0
    malformed: int = 0


def read(paths: Iterable[Path]) -> Logs:
    logs = Logs()
    for path in paths:
        rows_so_far: dict[str, int] = defaultdict(int)
        for _, line in read_lines(path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                event = record.get("event") if isinstance(record, dict) else None
                if event == "prediction":
                    # lines written before rows were numbered: their order within the request
                    request_id = str(record["request_id"])
                    row = int(record.get("row", rows_so_far[request_id]))
                    rows_so_far[request_id] += 1
                    logs.predictions[request_id, row] = Served(
                        parse_time(record["ts"]),
                        str(record["model_version"]),
                        float(record["prediction"]),
                        dict(record.get("inputs") or {}),
                    )
                elif event == "feedback":
                    key = (str(record["request_id"]), int(record["row"]))
                    logs.repeated += key in logs.labels
                    logs.labels[key] = float(record["actual"])
            except (ValueError, KeyError, TypeError, argparse.ArgumentTypeError):
                logs.malformed += 1
    return logs


def labelled_inputs(logs: Logs) -> list[tuple[dict[str, Any], float]]:
    """Each labelled prediction's inputs as sent, with the outcome its label gives."""
    return [
        (logs.predictions[key].inputs, actual)
        for key, actual in logs.labels.items()
        if key in logs.predictions
    ]


def window_length(text: str) -> timedelta:
    found = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not found or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"--window must be a whole number of minutes, hours or days such as 30m, 6h or 1d; "
            f"got {text!r}"
        )
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def windows(logs: Logs, length: timedelta) -> dict[tuple[str, datetime], list[tuple[float, float]]]:
    """(model version, window start) -> the (prediction, actual) pairs of its labelled rows."""
    grouped: dict[tuple[str, datetime], list[tuple[float, float]]] = defaultdict(list)
    for key, actual in logs.labels.items():
        served = logs.predictions.get(key)
        if served is not None:
            start = _EPOCH + (served.ts - _EPOCH) // length * length
            grouped[served.model_version, start].append((served.prediction, actual))
    return dict(sorted(grouped.items(), key=lambda item: (item[0][1], item[0][0])))


def judge(
    version: str,
    start: datetime,
    pairs: list[tuple[float, float]],
    card: dict[str, Any],
    min_rows: int,
) -> dict[str, Any]:
    predicted, actual = np.array(pairs).T
    residuals = actual - predicted
    rmse = float(np.sqrt(np.mean(residuals**2)))
    low, high = rmse_interval(residuals, RESAMPLES, np.random.default_rng(_SEED))
    test = card["metrics"]["test"]
    if version != card["model_version"]:
        status = "not judged"
        reason = f"the card in use is for model {card['model_version']}"
    elif len(pairs) < min_rows:
        status, reason = "too small", f"{len(pairs)} labelled rows, fewer than {min_rows}"
    else:
        worse = degraded((low, high), test["rmse_ci95_high"], len(pairs), min_rows)
        status, reason = ("degraded" if worse else "ok"), None
    return {
        "model_version": version,
        "window_start": start.isoformat(),
        "labelled_rows": len(pairs),
        "rmse": round(rmse, 4),
        "rmse_ci95": [round(low, 4), round(high, 4)],
        "mae": round(float(np.mean(np.abs(residuals))), 4),
        "card_test_rmse": test["rmse"],
        "card_test_rmse_ci95": [test["rmse_ci95_low"], test["rmse_ci95_high"]],
        "card_test_mae": test["mae"],
        "status": status,
        "reason": reason,
    }


def line(summary: dict[str, Any]) -> str:
    low, high = summary["rmse_ci95"]
    card_low, card_high = summary["card_test_rmse_ci95"]
    text = (
        f"model {summary['model_version']} from {summary['window_start']}: "
        f"{summary['labelled_rows']} labelled rows, RMSE {summary['rmse']:.2f} "
        f"[{low:.2f}, {high:.2f}] (card {summary['card_test_rmse']:.2f} "
        f"[{card_low:.2f}, {card_high:.2f}]), MAE {summary['mae']:.2f} "
        f"(card {summary['card_test_mae']:.2f}): {summary['status'].upper()}"
    )
    return text + (f" ({summary['reason']})" if summary["reason"] else "")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        card = read_card(args.model_dir)
        min_rows = args.min_rows or _min_rows(args.params)
    except (ArtifactError, ValueError, KeyError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return CANNOT_RUN
    logs = read(args.log)
    joined = windows(logs, args.window)
    unknown = sum(key not in logs.predictions for key in logs.labels)
    print(
        f"performance: {len(logs.predictions)} predictions, {len(logs.labels)} labelled rows "
        f"({unknown} unknown, {logs.repeated} repeated labels), {logs.malformed} malformed lines"
    )
    summaries = [
        judge(version, start, pairs, card, min_rows) for (version, start), pairs in joined.items()
    ]
    for summary in summaries:
        print(line(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "window": str(args.window),
        "min_rows": min_rows,
        "predictions": len(logs.predictions),
        "labels": len(logs.labels),
        "unknown_labels": unknown,
        "repeated_labels": logs.repeated,
        "malformed_lines": logs.malformed,
        "windows": summaries,
    }
    (args.out / "performance.json").write_text(json.dumps(report, indent=2) + "\n")
    judged = [s for s in summaries if s["status"] in ("ok", "degraded")]
    if not judged:
        print(f"performance: no window of model {card['model_version']} had {min_rows} labels")
        return CANNOT_RUN
    latest = judged[-1]
    if latest["status"] == "degraded":
        print(
            "Next: the served model's errors have grown beyond its card. Label recent houses and "
            "retrain on them (make retrain), and check the drift report for inputs that moved."
        )
        return DEGRADED
    return NOT_DEGRADED


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log", type=Path, nargs="+", required=True, help="prediction and feedback logs"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports/monitoring"))
    parser.add_argument("--window", type=window_length, default=timedelta(days=1))
    parser.add_argument("--min-rows", type=int, help="overrides performance_min_rows")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    if args.min_rows is not None and args.min_rows < 1:
        parser.error(f"--min-rows must be a whole number >= 1, got {args.min_rows}")
    return args


def _min_rows(params: Path) -> int:
    block = (yaml.safe_load(params.read_text()) or {}).get("monitoring", {})
    value = block["performance_min_rows"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"monitoring.performance_min_rows must be a whole number >= 1, got {value!r}"
        )
    return value


if __name__ == "__main__":
    sys.exit(main())
