"""The promotion rule's calibration: how often a challenger is promoted when it is really worse
than the champion by more than the margin (the rule's error), and when it is as good or better.

    python -m flows.calibration [--data CSV] [--trials N] [--seed S] [--margin M]

The errors are real: out-of-fold residuals of the drift calibration's stand-in model over the
506 tracts (monitoring/degradation.py). Each trial draws a held-out set of 101 rows (the test
split's size) and the champion's errors on it from those residuals. The challenger's errors are
correlated with the champion's, as two models fitted to nearly the same rows are: a share `rho`
of each error is the champion's own, the rest an independent draw, all scaled so that the
challenger's true RMSE differs from the champion's by a chosen amount. The rule (flows.decisions)
then compares the two with its paired bootstrap.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from flows.decisions import compare, decide
from monitoring.calibration import share_cell, simulation_parser
from monitoring.degradation import residuals_of

HELD_OUT = 101
RESAMPLES = 1_000  # params.yaml retrain.bootstrap
CORRELATIONS = (0.9, 0.7)
# the challenger's true RMSE minus the champion's, in units of the margin
SHIFTS = (-2.0, -1.0, 0.0, 1.0, 1.5, 2.0)


def challenger_errors(
    champion: np.ndarray, pool: np.ndarray, rho: float, ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """Errors sharing a share `rho` with the champion's, with `ratio` times their spread."""
    own = pool[rng.integers(0, len(pool), len(champion))]
    errors: np.ndarray = ratio * (rho * champion + np.sqrt(1 - rho**2) * own)
    return errors


def simulate(
    residuals: np.ndarray, margin: float, trials: int, seed: int
) -> dict[tuple[float, float], int]:
    """Per (rho, shift): in how many trials the challenger was promoted."""
    rng = np.random.default_rng(seed)
    spread = float(np.sqrt(np.mean(residuals**2)))
    promoted = dict.fromkeys(((rho, s) for rho in CORRELATIONS for s in SHIFTS), 0)
    for trial in range(trials):
        champion = residuals[rng.integers(0, len(residuals), HELD_OUT)]
        actual = np.zeros(HELD_OUT)  # errors are what matter: predictions = actual - error
        for rho in CORRELATIONS:
            for shift in SHIFTS:
                ratio = (spread + shift * margin) / spread
                challenger = challenger_errors(champion, residuals, rho, ratio, rng)
                comparison = compare(actual, -champion, -challenger, RESAMPLES, seed + trial)
                promoted[rho, shift] += decide(comparison, margin).promote
    return promoted


def table(promoted: dict[tuple[float, float], int], trials: int, margin: float) -> str:
    lines = ["rho | true RMSE difference | promoted", "----|----|----"]
    for rho in CORRELATIONS:
        for shift in SHIFTS:
            cell = share_cell(promoted[rho, shift], trials)
            lines.append(f"{rho} | {shift * margin:+.3f} ({shift:+g} margin) | {cell}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = simulation_parser(__doc__, trials=1_000, seed=20261203)
    parser.add_argument("--margin", type=float, help="overrides params.yaml retrain.margin")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    if args.margin is None:
        args.margin = float(yaml.safe_load(args.params.read_text())["retrain"]["margin"])
    started = time.perf_counter()
    residuals = residuals_of(pd.read_csv(args.data), args.seed)
    promoted = simulate(residuals, args.margin, args.trials, args.seed)
    print(
        f"Promotion rule calibration: {args.trials} trials, seed {args.seed}, margin "
        f"{args.margin}, {HELD_OUT} held-out rows, out-of-fold residuals of {len(residuals)} "
        f"real tracts (RMSE {np.sqrt(np.mean(residuals**2)):.2f}).\n"
        "Share of challengers promoted, with its 95% Wilson interval (a challenger worse by more "
        "than the margin should almost never be):\n"
    )
    print(table(promoted, args.trials, args.margin))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
