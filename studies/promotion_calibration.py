"""The promotion rule's calibration: how often a challenger is promoted when it is really worse
than the champion by more than the margin (the rule's error), and when it is as good or better.

    python -m studies.promotion_calibration [--data CSV] [--params YAML] [--trials N] [--seed S]
        [--margin M]

The errors are real: out-of-fold residuals of the studies' stand-in model over the real tracts.
Each trial draws a held-out set of the test split's size (params.yaml's preprocess.test_size) and
the champion's errors on it from those residuals. The challenger's errors are correlated with the
champion's, as two models fitted to nearly the same rows are: a share `rho` of each error is the
champion's own, the rest an independent draw, all scaled so that the challenger's true RMSE
differs from the champion's by a chosen amount. The rule (flows.decisions) then compares the two
with its paired bootstrap (retrain.bootstrap resamples) against retrain.margin.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from flows.decisions import compare, decide
from studies.simulation import (
    PipelineParams,
    RealResiduals,
    share_cell,
    simulation_parser,
)
from tools import results

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
    residuals: np.ndarray,
    margin: float,
    held_out: int,
    resamples: int,
    trials: int,
    seed: int,
) -> dict[tuple[float, float], int]:
    """Per (rho, shift): in how many trials the challenger was promoted."""
    rng = np.random.default_rng(seed)
    spread = float(np.sqrt(np.mean(residuals**2)))
    promoted = dict.fromkeys(((rho, s) for rho in CORRELATIONS for s in SHIFTS), 0)
    for trial in range(trials):
        champion = residuals[rng.integers(0, len(residuals), held_out)]
        actual = np.zeros(held_out)  # errors are what matter: predictions = actual - error
        for rho in CORRELATIONS:
            for shift in SHIFTS:
                ratio = (spread + shift * margin) / spread
                challenger = challenger_errors(champion, residuals, rho, ratio, rng)
                comparison = compare(actual, -champion, -challenger, resamples, seed + trial)
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
    results.add_option(parser)
    args = parser.parse_args(argv)
    params = PipelineParams.read(args.params)
    margin = params.margin if args.margin is None else args.margin
    started = time.perf_counter()
    residuals = RealResiduals.read(args, params)
    promoted = simulate(
        residuals.values, margin, residuals.test_rows, params.retrain_bootstrap, args.trials,
        args.seed,
    )  # fmt: skip
    text = (
        f"Promotion rule calibration: {args.trials} trials, seed {args.seed}, margin "
        f"{margin}, {residuals.test_rows} held-out rows, {residuals.describe()}.\n"
        "Share of challengers promoted, with its 95% Wilson interval (a challenger worse by more "
        "than the margin should almost never be):\n\n"
        f"{table(promoted, args.trials, margin)}\n\nwall time {time.perf_counter() - started:.0f} s"
    )
    results.publish(
        text, "Promotion rule calibration", "studies.promotion_calibration", argv, args.results
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
