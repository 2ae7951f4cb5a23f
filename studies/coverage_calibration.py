"""Calibration of the coverage verdict: how often it alarms while the intervals cover as promised,
and how soon once they cover less, when the report runs again and again over a growing log.

    python -m studies.coverage_calibration [--data CSV] [--params YAML] [--trials N] [--seed S]

Each trial is a stream of labelled intervals at level 0.9 whose labels arrive in batches of 50, up
to 2,000; after every batch the report's verdict is taken again over all the labels so far
(monitoring.coverage.sequential_verdict, with params.yaml's monitoring.coverage_alpha and
coverage_alternatives), as a scheduled `make performance` would. A stream alarms at the first run
whose verdict alarms. Streams:

- calibrated: every interval covers with probability 0.9 (a false alarm is any alarm);
- conformal on n rows: each trial's intervals cover with the probability a conformal calibration
  on the training split's n rows leaves them (Beta(k, n + 1 - k), k = ceil((n + 1) * 0.9); one
  group of n rows, which the Mondrian groups of n / bins rows each average to about the same
  spread). About half of these models truly cover a little less than 0.9, so the test's null
  hypothesis is false for them and a late alarm is a right one; the row shows how often that
  happens in 2,000 labels;
- coverage 85% and 80%: the intervals miss more often than promised (detection, and the median
  number of labels read when the alarm came).

Beside it, the naive verdict: a fresh one-sided exact binomial test of all the misses so far
against 1 - level at 5%, every run. Each run alone is a fair 5% test, but over 40 runs the chance
that one of them fires is far above 5%, which is why the report uses the sequential test. Every
rate comes with its 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy.stats import binom

from monitoring.coverage import CoverageSettings, sequential_verdict
from monitoring.performance import performance_settings
from stages.contract import TARGET
from studies.simulation import PipelineParams, read_data, share_cell, simulation_parser
from tools import results

LEVEL = 0.9
BATCH = 50
LABELS = 2_000
NAIVE_ALPHA = 0.05
CALIBRATED, CONFORMAL = "calibrated (coverage 90%)", "conformal on {n} rows"
DROPPED = {"coverage 85%": 0.85, "coverage 80%": 0.80}


def first_alarm(missed: np.ndarray, settings: CoverageSettings) -> int | None:
    """The labels read by the first run whose sequential verdict alarmed (None: no alarm)."""
    levels = np.full(len(missed), LEVEL)
    for seen in range(BATCH, len(missed) + 1, BATCH):
        if sequential_verdict(missed[:seen], levels[:seen], settings).alarm:
            return seen
    return None


def first_naive_alarm(missed: np.ndarray) -> int | None:
    """The labels read by the first run whose fresh binomial test rejected at 5%."""
    seen = np.arange(BATCH, len(missed) + 1, BATCH)
    misses = np.cumsum(missed)[seen - 1]
    p_values = binom.sf(misses - 1, seen, 1 - LEVEL)  # P(at least this many misses | 1 - level)
    rejected = np.flatnonzero(p_values < NAIVE_ALPHA)
    return int(seen[rejected[0]]) if rejected.size else None


def simulate(
    calibration_rows: int, settings: CoverageSettings, trials: int, seed: int
) -> dict[str, dict[str, list[int | None]]]:
    """Per stream and verdict ("sequential", "naive"): each trial's labels to its first alarm."""
    rng = np.random.default_rng(seed)
    rank = math.ceil((calibration_rows + 1) * LEVEL)
    conformal = CONFORMAL.format(n=calibration_rows)
    streams = {CALIBRATED: LEVEL, conformal: math.nan, **DROPPED}
    alarms: dict[str, dict[str, list[int | None]]] = {}
    for name, coverage in streams.items():
        found: dict[str, list[int | None]] = {"sequential": [], "naive": []}
        for _ in range(trials):
            if name == conformal:  # this trial's model: its calibration's own coverage
                coverage = rng.beta(rank, calibration_rows + 1 - rank)
            missed = rng.random(LABELS) >= coverage
            found["sequential"].append(first_alarm(missed, settings))
            found["naive"].append(first_naive_alarm(missed))
        alarms[name] = found
    return alarms


def table(alarms: dict[str, dict[str, list[int | None]]], trials: int) -> str:
    lines = [
        "stream | sequential: alarmed | median labels to alarm | "
        "naive binomial each run: alarmed | median labels to alarm",
        "---|---|--:|---|--:",
    ]
    for name, found in alarms.items():
        cells = []
        for verdict in ("sequential", "naive"):
            labels = [seen for seen in found[verdict] if seen is not None]
            median = f"{np.median(labels):.0f}" if labels else "-"
            cells += [share_cell(len(labels), trials), median]
        lines.append(f"{name} | " + " | ".join(cells))
    return "\n".join(lines)


def calibration_rows(args: argparse.Namespace, params: PipelineParams) -> int:
    """The training split's rows: what the served intervals are calibrated on."""
    _, data = read_data(args)
    labelled = int(data[TARGET.name].notna().sum())
    return labelled - params.test_rows(labelled)


def main(argv: list[str] | None = None) -> int:
    parser = simulation_parser(__doc__, trials=10_000, seed=20261204)
    results.add_option(parser)
    args = parser.parse_args(argv)
    settings = performance_settings(args.params).coverage
    rows = calibration_rows(args, PipelineParams.read(args.params))
    started = time.perf_counter()
    alarms = simulate(rows, settings, args.trials, args.seed)
    alternatives = ", ".join(f"{d:g}" for d in settings.alternatives)
    text = (
        f"Coverage verdict calibration: {args.trials} trials per stream, seed {args.seed}; "
        f"intervals at level {LEVEL:g}, labels in batches of {BATCH} up to {LABELS}, the "
        f"verdict taken again after every batch. Sequential test: alpha "
        f"{settings.alpha:g}, alternatives 1 - level + {{{alternatives}}}; naive: a one-sided "
        f"binomial test at {NAIVE_ALPHA:g} of all labels so far, every run.\n"
        f"Share of streams that alarmed within {LABELS} labels, with its 95% Wilson interval, "
        "and the median labels read when they did:\n\n"
        f"{table(alarms, args.trials)}\n\nwall time {time.perf_counter() - started:.0f} s"
    )
    results.publish(
        text, "Coverage verdict calibration", "studies.coverage_calibration", argv, args.results
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
