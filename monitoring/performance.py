"""Realised performance: the served predictions joined with the labels clients sent back.

    python -m monitoring.performance --log predictions.jsonl [labels.jsonl ...] [--out DIR]
        [--window 1d] [--min-rows N] [--model-dir models] [--push URL]

Reads the service's lines through monitoring/logs.py (files, folders, globs, gzip and Parquet),
with bounded memory: its predictions and the labels of POST /feedback, wherever each was
written, joined in DuckDB. A label names its prediction by request id
and row; the last label of a row counts, the others are counted as repeated, and labels without a
prediction in the logs are counted as unknown. The joined rows are grouped by `model_version` and
by windows of the prediction's time; each window gets its RMSE and MAE with 95% bootstrap
intervals, next to the model card's test figures.

A window of the card's model is "degraded" when the whole interval of its RMSE lies above the
card's interval of the test RMSE, judged only with at least `min_rows` labelled rows
(params.yaml monitoring.performance_min_rows); the interval is drawn with as many resamples as the
evaluate stage draws the card's (evaluate.bootstrap). studies/degradation_calibration.py measures
the rule's false alarms and detections.

Labelled predictions served with a conformal interval also get the share of labels their
intervals covered, per window and per model version, and per model version a sequential test of
that coverage against the intervals' level (monitoring/coverage.py), whose alarm stays valid over
repeated runs on a growing log; studies/coverage_calibration.py measures it. Labels of lines
without an interval (older lines) are left out of these figures and counted.

Writes performance.json and prints a table; exits 0 when the latest judged window of the card's
model is not degraded, 1 when it is or when the coverage test of the card's model has alarmed,
and 2 when neither could be judged. `performance_status` gives the same verdict to a caller.
`--push URL` leaves each model version's coverage and alarm on a Prometheus Pushgateway.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from artifact import ArtifactError, read_card
from conformal import covered
from monitoring.coverage import (
    CoverageSettings,
    CoverageVerdict,
    sequential_verdict,
    window_coverage,
)
from monitoring.logs import Labelled, LogError, LogReader

NOT_DEGRADED, DEGRADED, CANNOT_RUN = 0, 1, 2
PerformanceStatus = Literal["degraded", "ok", "cannot judge"]
EXIT_CODES: dict[PerformanceStatus, int] = {
    "ok": NOT_DEGRADED, "degraded": DEGRADED, "cannot judge": CANNOT_RUN,
}  # fmt: skip
PARAMS = Path("params.yaml")
PUSH_JOB = "boston_housing_performance"
LEVEL = 0.95
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# the windows' bootstrap intervals are seeded: the same logs give the same report
_SEED = 0


@dataclass(frozen=True)
class PerformanceSettings:
    """The rule's knobs: the labels a window needs, the bootstrap's resamples, and the coverage
    test's."""

    min_rows: int
    resamples: int
    coverage: CoverageSettings


def window_length(text: str) -> timedelta:
    found = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not found or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"--window must be a whole number of minutes, hours or days such as 30m, 6h or 1d; "
            f"got {text!r}"
        )
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def windows(
    labelled: Labelled, length: timedelta
) -> dict[tuple[str, datetime], list[tuple[float, float]]]:
    """(model version, window start) -> the (prediction, actual) pairs of its labelled rows."""
    grouped: dict[tuple[str, datetime], list[tuple[float, float]]] = defaultdict(list)
    for version, served, predicted, actual in zip(
        labelled.versions, labelled.served, labelled.predictions, labelled.actuals, strict=True
    ):
        grouped[version, _window_start(served, length)].append((float(predicted), float(actual)))
    return dict(sorted(grouped.items(), key=lambda item: (item[0][1], item[0][0])))


@dataclass(frozen=True)
class IntervalLabels:
    """The labelled predictions served with an interval, in the order their labels arrived."""

    versions: list[str]
    starts: list[datetime]
    covered: np.ndarray
    levels: np.ndarray
    without_interval: int  # labelled predictions logged without one (older lines)


def interval_labels(labelled: Labelled, length: timedelta) -> IntervalLabels:
    """Whether each labelled interval covered its label, in label order (a row's first label
    fixes its place, its last label its value, as for the RMSE)."""
    has = ~np.isnan(labelled.lower)
    versions = [version for version, kept in zip(labelled.versions, has, strict=True) if kept]
    starts = [
        _window_start(served, length)
        for served, kept in zip(labelled.served, has, strict=True)
        if kept
    ]
    inside = covered(
        labelled.actuals[has], labelled.lower[has], labelled.upper[has],
        labelled.upper_censored[has],
    )  # fmt: skip
    return IntervalLabels(versions, starts, inside, labelled.levels[has], int((~has).sum()))


def coverage_windows(
    labels: IntervalLabels,
) -> dict[tuple[str, datetime], dict[str, Any]]:
    """(model version, window start) -> its realised coverage."""
    grouped: dict[tuple[str, datetime], list[int]] = defaultdict(list)
    for index, key in enumerate(zip(labels.versions, labels.starts, strict=True)):
        grouped[key].append(index)
    return {
        key: window_coverage(labels.covered[indices], labels.levels[indices])
        for key, indices in grouped.items()
    }


def coverage_verdicts(
    labels: IntervalLabels, settings: CoverageSettings
) -> dict[str, CoverageVerdict]:
    """Per model version, the sequential test over its labels in arrival order."""
    versions = np.array(labels.versions, dtype=object)
    return {
        version: sequential_verdict(
            ~labels.covered[versions == version], labels.levels[versions == version], settings
        )
        for version in sorted(set(labels.versions))
    }


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
    text += f" ({summary['reason']})" if summary["reason"] else ""
    coverage = summary.get("coverage")
    if coverage:
        low, high = coverage["coverage_ci95"]
        text += (
            f"; interval coverage {coverage['coverage']:.1%} [{low:.1%}, {high:.1%}] of "
            f"{coverage['rows']} (nominal {coverage['nominal_coverage']:.1%})"
        )
    return text


def coverage_line(version: str, verdict: dict[str, Any]) -> str:
    low, high = verdict["coverage_ci95"]
    text = (
        f"model {version}: {verdict['labels']} labelled intervals, coverage "
        f"{verdict['coverage']:.1%} [{low:.1%}, {high:.1%}] (nominal "
        f"{verdict['nominal_coverage']:.1%}); sequential test e-value {verdict['e_value']:.3g}, "
        f"highest {verdict['max_e_value']:.3g}, alarm at {verdict['threshold']:g}: "
    )
    if verdict["alarm"]:
        return text + f"COVERAGE ALARM (since label {verdict['alarm_at_label']})"
    return text + "no alarm"


def push(url: str, verdicts: dict[str, CoverageVerdict]) -> None:
    """Each model version's coverage and alarm as gauges on a Pushgateway (one group per
    version, as the drift report pushes)."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    for version, verdict in verdicts.items():
        registry = CollectorRegistry()
        figures = verdict.as_dict()
        low, high = figures["coverage_ci95"]
        gauges = {
            "model_interval_coverage": (
                verdict.coverage, "Share of labelled prediction intervals that covered the label",
            ),
            "model_interval_coverage_ci95_low": (low, "95% Wilson lower bound of the coverage"),
            "model_interval_coverage_ci95_high": (high, "95% Wilson upper bound of the coverage"),
            "model_interval_nominal_coverage": (
                verdict.nominal, "The coverage the intervals promise (their mean level)",
            ),
            "model_interval_coverage_labels": (verdict.labels, "Labelled intervals counted"),
            "model_interval_coverage_alarm": (
                int(verdict.alarm),
                "1 once the sequential coverage test has alarmed: intervals miss too often",
            ),
        }  # fmt: skip
        for name, (value, documentation) in gauges.items():
            Gauge(name, documentation, registry=registry).set(value)
        Gauge(
            "performance_last_run_timestamp_seconds", "When the report ran", registry=registry
        ).set_to_current_time()
        push_to_gateway(
            url, job=PUSH_JOB, registry=registry, grouping_key={"model_version": version}
        )


def performance_status(
    logs: Sequence[Path],
    model_dir: Path,
    out: Path,
    *,
    settings: PerformanceSettings | None = None,
    window: timedelta = timedelta(days=1),
    push_to: str | None = None,
) -> PerformanceStatus:
    """Judge the windows of labelled predictions in `logs` and write performance.json to `out`.

    The latest judged window of the card's model decides: "degraded" or "ok"; "cannot judge" when
    no window was judged (too few labels, another model's window, an unusable card). An alarm of
    the card's model's coverage test is "degraded" too: its intervals miss more often than their
    level promises. `settings` default to params.yaml's.
    """
    try:
        settings = settings or performance_settings(PARAMS)
        card = read_card(model_dir)
    except (ArtifactError, ValueError, OSError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return "cannot judge"
    try:
        with LogReader(logs) as reader:
            labelled, skipped = reader.labelled()
    except (LogError, OSError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return "cannot judge"
    skipped.warn("performance")
    joined = windows(labelled, window)
    labelled_intervals = interval_labels(labelled, window)
    by_window = coverage_windows(labelled_intervals)
    verdicts = coverage_verdicts(labelled_intervals, settings.coverage)
    print(
        f"performance: {labelled.predicted_rows} predictions, {labelled.labels} labelled "
        f"rows ({labelled.unknown} unknown, {labelled.repeated} repeated labels), "
        f"{skipped.count} malformed lines"
    )
    summaries = [
        {
            **judge(version, start, pairs, card, settings),
            "coverage": by_window.get((version, start)),
        }
        for (version, start), pairs in joined.items()
    ]
    for summary in summaries:
        print(line(summary))
    coverage = {version: verdict.as_dict() for version, verdict in verdicts.items()}
    for version, figures in coverage.items():
        print(coverage_line(version, figures))
    if labelled_intervals.without_interval:
        print(
            f"performance: {labelled_intervals.without_interval} labelled predictions were "
            "logged without an interval; left out of the coverage figures"
        )
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "window": str(window),
        "min_rows": settings.min_rows,
        "predictions": labelled.predicted_rows,
        "labels": labelled.labels,
        "unknown_labels": labelled.unknown,
        "repeated_labels": labelled.repeated,
        "malformed_lines": skipped.count,
        "windows": summaries,
        "coverage": {
            "alpha": settings.coverage.alpha,
            "alternatives": list(settings.coverage.alternatives),
            "labels_without_interval": labelled_intervals.without_interval,
            "model_versions": coverage,
        },
    }
    (out / "performance.json").write_text(json.dumps(report, indent=2) + "\n")
    if push_to and verdicts:
        push(push_to, verdicts)
    judged = [s for s in summaries if s["status"] in ("ok", "degraded")]
    errors_grew = bool(judged) and judged[-1]["status"] == "degraded"
    if errors_grew:
        print(
            "Next: the served model's errors have grown beyond its card. Label recent houses and "
            "retrain on them (make retrain), and check the drift report for inputs that moved."
        )
    card_coverage = verdicts.get(card["model_version"])
    if card_coverage is not None and card_coverage.alarm:
        print(
            "Next: the served model's intervals miss more often than their level promises. "
            "Label recent houses and retrain on them (make retrain): retraining calibrates the "
            "intervals again."
        )
        return "degraded"
    if errors_grew:
        return "degraded"
    if not judged:
        print(
            f"performance: no window of model {card['model_version']} had "
            f"{settings.min_rows} labels"
        )
        return "cannot judge"
    return "ok"


def performance_settings(params: Path, min_rows: int | None = None) -> PerformanceSettings:
    """params.yaml's monitoring.performance_min_rows (or the command line's), evaluate.bootstrap
    and the coverage test's monitoring.coverage_*, checked."""
    loaded = yaml.safe_load(params.read_text()) or {}
    coverage = CoverageSettings.from_params(loaded.get("monitoring", {}))
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
        coverage=coverage,
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        settings = performance_settings(args.params, args.min_rows)
    except (ValueError, OSError) as error:
        print(f"performance: {error}", file=sys.stderr)
        return CANNOT_RUN
    status = performance_status(
        args.log, args.model_dir, args.out, settings=settings, window=args.window,
        push_to=args.push,
    )  # fmt: skip
    return EXIT_CODES[status]


def _window_start(moment: datetime, length: timedelta) -> datetime:
    """Windows start at whole multiples of their length since 1970."""
    return _EPOCH + (moment - _EPOCH) // length * length


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log",
        type=Path,
        nargs="+",
        required=True,
        help="prediction and feedback logs: files (.gz too), folders or globs",
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports/monitoring"))
    parser.add_argument("--window", type=window_length, default=timedelta(days=1))
    parser.add_argument("--min-rows", type=int, help="overrides performance_min_rows")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--push", metavar="URL", help="a Prometheus Pushgateway to push to")
    args = parser.parse_args(argv)
    if args.min_rows is not None and args.min_rows < 1:
        parser.error(f"--min-rows must be a whole number >= 1, got {args.min_rows}")
    return args


if __name__ == "__main__":
    sys.exit(main())
