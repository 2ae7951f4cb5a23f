"""Tune comparison: grid against Optuna on the same folds, the same machine, in one run.

For each variant of the committed tune settings it runs the whole of tune (the main search and
nested CV) and prints the best CV RMSE, the nested CV RMSE, the wall time, and the chosen model's
size (trees, bytes) and the median time it takes to score 10,000 rows. Times are only comparable
within one run (these machines are noisy), hence the ratios against the committed search. The
variants: grid and Optuna, the grid with early stopping toggled (on with generous caps when the
committed settings have it off, else off), and the grid with monotone constraints (`--monotone`,
RM rising and LSTAT falling by default), which shows what the domain promise costs. Run with
`make tune-compare` after `make repro`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import time
from typing import Any

import joblib
import numpy as np

from stages.contract import model_features
from stages.files import load_params, pipeline_path, read_table
from stages.tune import TuneResult, TuneSettings, tune
from tools import results

TITLE = "Tune comparison: grid, Optuna, early stopping, monotone"
BATCH_ROWS = 10_000
# The scored batch is the training rows tiled, then shuffled: a tree ensemble predicts rows that
# repeat one sequence much faster than rows in no particular order, as real batches come.
SHUFFLE_SEED = 20240601
# With early stopping the boosting caps become generous and the learning rate a little faster
# (measured on this data: lr 0.05 with 50 rounds of patience beat lr 0.02 with 20, 50 or 100).
EARLY_STOPPING = 50
STOPPING_GRIDS: dict[str, dict[str, list[Any]]] = {
    "gradient_boosting": {"n_estimators": [3000], "learning_rate": [0.05]},
    "hist_gradient_boosting": {"max_iter": [2000]},
}


def variants(committed: TuneSettings, monotone: dict[str, int]) -> dict[str, TuneSettings]:
    other = "optuna" if committed.search == "grid" else "grid"
    grid = dataclasses.replace(committed, search="grid", nested=True)
    if committed.n_iter_no_change is None:
        grids = {
            family: {**committed.grids.get(family, {}), **STOPPING_GRIDS.get(family, {})}
            for family in committed.families
        }
        toggled = ("grid, early stopping", dataclasses.replace(
            grid, grids=grids, n_iter_no_change=EARLY_STOPPING
        ))  # fmt: skip
    else:
        toggled = ("grid, no early stopping", dataclasses.replace(grid, n_iter_no_change=None))
    return {
        f"{committed.search} (committed)": dataclasses.replace(committed, nested=True),
        other: dataclasses.replace(committed, search=other, nested=True),
        toggled[0]: toggled[1],
        "grid, monotone": dataclasses.replace(grid, monotone=monotone),
    }


def scoring_ms(result: TuneResult, X: np.ndarray, repeats: int = 7) -> float:
    tiled = np.resize(X, (BATCH_ROWS, X.shape[1]))
    batch = np.random.default_rng(SHUFFLE_SEED).permutation(tiled)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result.model.predict(batch)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(name: str, settings: TuneSettings, train: Any, features: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    result = tune(train, features, settings)
    seconds = time.perf_counter() - start
    best = result.report["best"]
    buffer = io.BytesIO()
    joblib.dump(result.model, buffer)
    return {
        "variant": name,
        "family": best["family"],
        "cv_rmse": best["cv_rmse_mean"],
        "nested_rmse": best["nested_cv_rmse_mean"],
        "seconds": seconds,
        "trees": best["trees"],
        "kbytes": len(buffer.getvalue()) / 1024,
        "score_ms": scoring_ms(result, train[features].to_numpy(dtype=np.float64)),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The variants as a Markdown table; the ratios are against the first (committed) variant."""
    baseline = rows[0]
    lines = [
        "| variant | family | CV RMSE | nested CV RMSE | time s | x | trees | KiB "
        f"| {BATCH_ROWS:,} rows ms | x |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['family']} | {row['cv_rmse']:.3f} "
            f"| {row['nested_rmse']:.3f} | {row['seconds']:.1f} "
            f"| {row['seconds'] / baseline['seconds']:.2f} | {row['trees'] or '-'} "
            f"| {row['kbytes']:.0f} | {row['score_ms']:.1f} "
            f"| {row['score_ms'] / baseline['score_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--monotone",
        default="RM=1,LSTAT=-1",
        help="constraints of the monotone variant, as NAME=SIGN pairs (default: %(default)s)",
    )
    results.add_option(parser)
    args = parser.parse_args(argv)
    monotone = {
        name: int(sign) for name, sign in (pair.split("=") for pair in args.monotone.split(","))
    }
    params = load_params("tune")
    committed = TuneSettings.from_params(params)
    features = model_features(params["features"]["drop"])
    train = read_table(pipeline_path("train"))

    rows = []
    for name, settings in variants(committed, monotone).items():
        rows.append(measure(name, settings, train, features))
        print(f"  measured {name}: {rows[-1]['seconds']:.0f} s", flush=True)
    text = (
        f"{len(train)} training rows, the same folds for every variant ({monotone=}). Times "
        f"and the scoring of {BATCH_ROWS:,} rows (the training rows tiled, shuffled with numpy's "
        f"default_rng seed {SHUFFLE_SEED}) also as ratios (x) to the committed search.\n\n"
        f"{table(rows)}"
    )
    print(f"\n{text}")
    if args.results:
        command = results.command_line("tools.tune_compare", argv)
        results.write(args.results, TITLE, text, command)


if __name__ == "__main__":
    main()
