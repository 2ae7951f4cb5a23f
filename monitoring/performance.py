"""Realised performance: the served predictions joined with the labels clients sent back.

    python -m monitoring.performance --log predictions.jsonl [labels.jsonl ...] [--out DIR]
        [--window 1d] [--min-rows N] [--model-dir models]

Reads the service's lines with prediction_log's reader (gzip allowed): its predictions and the
labels of POST /feedback, wherever each was written. A label names its prediction by request id
and row; the last label of a row counts, the others are counted as repeated, and labels without a
prediction in the logs are counted as unknown. The joined rows are grouped by `model_version` and
by windows of the prediction's time; each window gets its RMSE and MAE with 95% bootstrap
intervals, next to the model card's test figures.

A window of the card's model is "degraded" when the whole interval of its RMSE lies above the
card's interval of the test RMSE, judged only with at least `min_rows` labelled rows
(params.yaml monitoring.performance_min_rows); the interval is drawn with as many resamples as the
evaluate stage draws the card's (evaluate.bootstrap). studies/degradation_calibration.py measures
the rule's false alarms and detections. Writes performance.json and prints a table; exits 0 when
the latest judged window of the card's model is not degraded, 1 when it is, and 2 when none could
be judged. `performance_status` gives the same verdict to a caller.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from artifact import ArtifactError, read_card
from prediction_log import Prediction, Skipped, read_records

NOT_DEGRADED, DEGRADED, CANNOT_RUN = 0, 1, 2
PerformanceStatus = Literal["degraded", "ok", "cannot judge"]
EXIT_CODES: dict[PerformanceStatus, int] = {
    "ok": NOT_DEGRADED, "degraded": DEGRADED, "cannot judge": CANNOT_RUN,
}  # fmt: skip
PARAMS = Path("params.yaml")
LEVEL = 0.95
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# the windows' bootstrap intervals are seeded: the same logs give the same report
_SEED = 0


@dataclass(frozen=True)
class PerformanceSettings:
    """The rule's knobs: the labels a window needs, and the bootstrap's resamples."""

    min_rows: int
    resamples: int


@dataclass
class Logs:
    """Predictions and labels by (request id, row), and what did not fit."""

    predictions: dict[tuple[str, int], Prediction] = field(default_factory=dict)
    labels: dict[tuple[str, int], float] = field(default_factory=dict)
    repeated: int = 0
    skipped: Skipped = field(default_factory=Skipped)

    @property
    def malformed(self) -> int:
        return self.skipped.count


def read(paths: Iterable[Path]) -> Logs:
    logs = Logs()
    for record in read_records(paths, logs.skipped):
        key = (record.request_id, record.row)
        if isinstance(record, Prediction):
            logs.predictions[key] = record
        else:
            logs.repeated += key in logs.labels
            logs.labels[key] = record.actual
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


def rmse_interval(
    residuals: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The percentile bootstrap interval of the RMSE, drawn as the evaluate stage draws the
    card's (vectorised)."""
    draws = rng.integers(0, len(residuals), size=(resamples, len(residuals)))
    rmse = np.sqrt(np.mean(residuals[draws] ** 2, axis=1))
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(rmse, tail)), float(np.percentile(rmse, 100 - tail))


def degraded(window: tuple[float, float], card_upper: float, rows: int, min_rows: int) -> bool:
    """The rule: a big enough window whose whole RMSE interval is above the card's."""
    return rows >= min_rows and window[0] > card_upper


def judge(
    version: str,
    start: datetime,
    pairs: list[tuple[float, float]],
    card: dict[str, Any],
    settings: PerformanceSettings,
) -> dict[str, Any]:
    predicted, actual = np.array(pairs).T
    residuals = actual - predicted
    rmse = float(np.sqrt(np.mean(residuals**2)))
    low, high = rmse_interval(residuals, settings.resamples, np.random.default_rng(_SEED))
    test = card["metrics"]["test"]
    min_rows = settings.min_rows
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


def performance_status(
    logs: Sequence[Path],
    model_dir: Path,
    out: Path,
    *,
    settings: PerformanceSettings | None = None,
    window: timedelta = timedelta(days=1),
) -> PerformanceStatus:
    """Judge the windows of labelled predictions in `logs` and write performance.json to `out`.

    The latest judged window of the card's model decides: "degraded" or "ok"; "cannot judge" when
    no window was judged (too few labels, another model's window, an unusable card). `settings`
    default to params.yaml's.
    """
    try:
        settings = settings or performance_settings(PARAMS)
        card = read_card(model_dir)
    except (ArtifactError, ValueError, OSError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return "cannot judge"
    logs_read = read(logs)
    logs_read.skipped.warn("performance")
    joined = windows(logs_read, window)
    unknown = sum(key not in logs_read.predictions for key in logs_read.labels)
    print(
        f"performance: {len(logs_read.predictions)} predictions, {len(logs_read.labels)} labelled "
        f"rows ({unknown} unknown, {logs_read.repeated} repeated labels), "
        f"{logs_read.malformed} malformed lines"
    )
    summaries = [
        judge(version, start, pairs, card, settings) for (version, start), pairs in joined.items()
    ]
    for summary in summaries:
        print(line(summary))
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "window": str(window),
        "min_rows": settings.min_rows,
        "predictions": len(logs_read.predictions),
        "labels": len(logs_read.labels),
        "unknown_labels": unknown,
        "repeated_labels": logs_read.repeated,
        "malformed_lines": logs_read.malformed,
        "windows": summaries,
    }
    (out / "performance.json").write_text(json.dumps(report, indent=2) + "\n")
    judged = [s for s in summaries if s["status"] in ("ok", "degraded")]
    if not judged:
        print(
            f"performance: no window of model {card['model_version']} had "
            f"{settings.min_rows} labels"
        )
        return "cannot judge"
    if judged[-1]["status"] == "degraded":
        print(
            "Next: the served model's errors have grown beyond its card. Label recent houses and "
            "retrain on them (make retrain), and check the drift report for inputs that moved."
        )
        return "degraded"
    return "ok"


def performance_settings(params: Path, min_rows: int | None = None) -> PerformanceSettings:
    """params.yaml's monitoring.performance_min_rows (or the command line's) and
    evaluate.bootstrap, checked."""
    loaded = yaml.safe_load(params.read_text()) or {}
    chosen = {
        "monitoring.performance_min_rows": (
            loaded.get("monitoring", {}).get("performance_min_rows")
            if min_rows is None
            else min_rows
        ),
        "evaluate.bootstrap": loaded.get("evaluate", {}).get("bootstrap"),
    }
    for key, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a whole number >= 1, got {value!r}")
    return PerformanceSettings(
        min_rows=chosen["monitoring.performance_min_rows"],
        resamples=chosen["evaluate.bootstrap"],
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        settings = performance_settings(args.params, args.min_rows)
    except (ValueError, OSError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return CANNOT_RUN
    status = performance_status(
        args.log, args.model_dir, args.out, settings=settings, window=args.window
    )
    return EXIT_CODES[status]


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


if __name__ == "__main__":
    sys.exit(main())
