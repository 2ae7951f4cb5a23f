"""The degraded rule, and its calibration: how often it fires while the model is as good as its
card says, and how often once its errors have grown.

    python -m monitoring.degradation [--data CSV] [--trials N] [--seed S]

The rule (monitoring/performance.py): a window of labelled predictions is "degraded" when the
whole 95% bootstrap interval of its RMSE lies above the card's 95% interval of the test RMSE, and
it is only judged with at least `min_rows` labelled rows. The simpler rule "the window's RMSE is
above the card's upper bound" is simulated beside it: it fires in about one healthy window in five
whatever the window's size, because the card's own bound comes from about 100 test rows and is
itself that uncertain.

The simulation uses real errors: out-of-fold residuals of the drift calibration's stand-in model
(5-fold, over the real tracts). Each trial draws a test split of 20% of them (the card's interval:
the evaluate stage's percentile bootstrap, 1,000 resamples), then one window of labelled rows per
size from all of them, as they are (healthy) or scaled up by a factor (the model's errors grew;
scaling the residuals scales the RMSE and its interval alike). The false-alarm rate is the share
of healthy windows judged degraded, the detection rate that of the scaled ones, each with its 95%
Wilson interval.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, cross_val_predict
from threadpoolctl import threadpool_limits

from monitoring.calibration import DROP, THREADS, share_cell, simulation_parser, stand_in
from stages.contract import TARGET, model_features

RESAMPLES = 1_000  # params.yaml evaluate.bootstrap
TEST_SHARE = 0.2  # params.yaml split.test_size
LEVEL = 0.95
WINDOWS = (30, 50, 100, 200)
GROWTH = (1.0, 1.25, 1.5, 2.0)


def rmse_interval(
    residuals: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The percentile bootstrap interval of the RMSE, drawn as stages.evaluate draws it
    (vectorised)."""
    draws = rng.integers(0, len(residuals), size=(resamples, len(residuals)))
    rmse = np.sqrt(np.mean(residuals[draws] ** 2, axis=1))
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(rmse, tail)), float(np.percentile(rmse, 100 - tail))


def degraded(window: tuple[float, float], card_upper: float, rows: int, min_rows: int) -> bool:
    """The rule: a big enough window whose whole RMSE interval is above the card's."""
    return rows >= min_rows and window[0] > card_upper


def residuals_of(table: pd.DataFrame, seed: int) -> np.ndarray:
    """Out-of-fold residuals of the stand-in model over the real tracts with a known price."""
    features = model_features(DROP)
    complete = table.dropna(subset=[TARGET.name])
    inputs = complete[features].to_numpy(dtype=np.float64)
    actual = complete[TARGET.name].to_numpy(dtype=np.float64)
    folds = KFold(5, shuffle=True, random_state=seed)
    with threadpool_limits(limits=THREADS):
        predicted = np.asarray(cross_val_predict(stand_in(), inputs, actual, cv=folds))
    residuals: np.ndarray = actual - predicted
    return residuals


RULES = ("interval", "point")  # the shipped rule, and the window's RMSE against the bound


def simulate(residuals: np.ndarray, trials: int, seed: int) -> dict[tuple[str, int, float], int]:
    """Per (rule, window size, error growth): in how many trials the rule fired."""
    rng = np.random.default_rng(seed)
    test_rows = round(len(residuals) * TEST_SHARE)
    fired = dict.fromkeys(((r, n, g) for r in RULES for n in WINDOWS for g in GROWTH), 0)
    for _ in range(trials):
        test = residuals[rng.permutation(len(residuals))[:test_rows]]
        _, upper = rmse_interval(test, RESAMPLES, rng)
        for rows in WINDOWS:
            window = residuals[rng.integers(0, len(residuals), rows)]
            rmse = float(np.sqrt(np.mean(window**2)))
            low, high = rmse_interval(window, RESAMPLES, rng)
            for growth in GROWTH:
                interval = (low * growth, high * growth)
                fired["interval", rows, growth] += degraded(interval, upper, rows, rows)
                fired["point", rows, growth] += rmse * growth > upper
    return fired


def table(fired: dict[tuple[str, int, float], int], trials: int) -> str:
    header = "rule     | window rows | " + " | ".join(
        "healthy: false alarms" if g == 1.0 else f"errors x{g:g}: detected" for g in GROWTH
    )
    lines = [header, "-" * len(header)]
    for rule in RULES:
        for rows in WINDOWS:
            cells = []
            for growth in GROWTH:
                cells.append(share_cell(fired[rule, rows, growth], trials))
            lines.append(f"{rule:<8} | {rows:>11} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = simulation_parser(__doc__, trials=1_000, seed=20261203).parse_args(argv)
    started = time.perf_counter()
    residuals = residuals_of(pd.read_csv(args.data), args.seed)
    fired = simulate(residuals, args.trials, args.seed)
    print(
        f"Degraded rule calibration: {args.trials} trials, seed {args.seed}, out-of-fold residuals "
        f"of {len(residuals)} real tracts (RMSE {np.sqrt(np.mean(residuals**2)):.2f}); card "
        f"interval from a {TEST_SHARE:.0%} test split, {RESAMPLES} bootstrap resamples.\n"
        "Share of windows judged degraded, with its 95% Wilson interval:\n"
    )
    print(table(fired, args.trials))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
