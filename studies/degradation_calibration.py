"""Calibration of the degraded rule: how often it fires while the model is as good as its card
says, and how often once its errors have grown.

    python -m studies.degradation_calibration [--data CSV] [--params YAML] [--trials N] [--seed S]

The rule (monitoring.performance.degraded): a window of labelled predictions is "degraded" when
the whole 95% bootstrap interval of its RMSE lies above the card's 95% interval of the test RMSE,
and it is only judged with at least `min_rows` labelled rows. The simpler rule "the window's RMSE
is above the card's upper bound" is simulated beside it, to show why the window's own uncertainty
must count: the card's bound comes from the test split alone and is itself uncertain.

The simulation uses real errors: out-of-fold residuals of the studies' stand-in model over the
real tracts. Each trial draws a test split of them (params.yaml's preprocess.test_size; the card's
interval with evaluate.bootstrap resamples, as the evaluate stage draws it), then one window of
labelled rows per size from all of them, as they are (healthy) or scaled up by a factor (the
model's errors grew; scaling the residuals scales the RMSE and its interval alike). The
false-alarm rate is the share of healthy windows judged degraded, the detection rate that of the
scaled ones, each with its 95% Wilson interval.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from monitoring.performance import degraded, rmse_interval
from studies.simulation import (
    PipelineParams,
    RealResiduals,
    share_cell,
    simulation_parser,
)
from tools import results

WINDOWS = (30, 50, 100, 200)
GROWTH = (1.0, 1.25, 1.5, 2.0)
RULES = ("interval", "point")  # the shipped rule, and the window's RMSE against the bound


def simulate(
    residuals: np.ndarray, test_rows: int, resamples: int, trials: int, seed: int
) -> dict[tuple[str, int, float], int]:
    """Per (rule, window size, error growth): in how many trials the rule fired."""
    rng = np.random.default_rng(seed)
    fired = dict.fromkeys(((r, n, g) for r in RULES for n in WINDOWS for g in GROWTH), 0)
    for _ in range(trials):
        test = residuals[rng.permutation(len(residuals))[:test_rows]]
        _, upper = rmse_interval(test, resamples, rng)
        for rows in WINDOWS:
            window = residuals[rng.integers(0, len(residuals), rows)]
            rmse = float(np.sqrt(np.mean(window**2)))
            low, high = rmse_interval(window, resamples, rng)
            for growth in GROWTH:
                interval = (low * growth, high * growth)
                fired["interval", rows, growth] += degraded(interval, upper, rows, rows)
                fired["point", rows, growth] += rmse * growth > upper
    return fired


def table(fired: dict[tuple[str, int, float], int], trials: int) -> str:
    header = "rule     | window rows | " + " | ".join(
        "healthy: false alarms" if g == 1.0 else f"errors x{g:g}: detected" for g in GROWTH
    )
    lines = [header, "---|--:|" + "|".join("---" for _ in GROWTH)]
    for rule in RULES:
        for rows in WINDOWS:
            cells = [share_cell(fired[rule, rows, growth], trials) for growth in GROWTH]
            lines.append(f"{rule:<8} | {rows:>11} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = simulation_parser(__doc__, trials=1_000, seed=20261203)
    results.add_option(parser)
    args = parser.parse_args(argv)
    params = PipelineParams.read(args.params)
    started = time.perf_counter()
    residuals = RealResiduals.read(args, params)
    test_rows = residuals.test_rows
    fired = simulate(residuals.values, test_rows, params.bootstrap, args.trials, args.seed)
    text = (
        f"Degraded rule calibration: {args.trials} trials, seed {args.seed}, "
        f"{residuals.describe()}; card interval from a test split of {test_rows} rows, "
        f"{params.bootstrap} bootstrap "
        "resamples.\nShare of windows judged degraded, with its 95% Wilson interval:\n\n"
        f"{table(fired, args.trials)}\n\nwall time {time.perf_counter() - started:.0f} s"
    )
    results.publish(
        text, "Degraded rule calibration", "studies.degradation_calibration", argv, args.results
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
