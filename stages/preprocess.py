"""Preprocess: a seeded train/test split, stratified on MEDV deciles so both halves span the range.

The test split is touched once, by evaluate; tune sees the training split only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from stages.contract import TARGET
from stages.files import load_params, read_table

_MAX_STRATA = 10


def split(table: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (train, test). Fails with the setting's name when test_size is unusable."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"preprocess.test_size must lie strictly between 0 and 1, got {test_size}")
    n_test = round(len(table) * test_size)
    if n_test < 2 or len(table) - n_test < 2:
        raise ValueError(
            f"preprocess.test_size {test_size} leaves {n_test} of {len(table)} rows for testing; "
            "both splits need at least 2 rows"
        )
    # Each stratum needs a member on both sides of the split.
    strata_count = max(1, min(_MAX_STRATA, n_test, len(table) - n_test))
    strata = pd.qcut(table[TARGET.name].rank(method="first"), strata_count, labels=False)
    train, test = train_test_split(
        table, test_size=n_test, random_state=seed, shuffle=True, stratify=strata
    )
    return train.sort_index(), test.sort_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("preprocess")

    try:
        train, test = split(
            read_table(args.table), params["preprocess"]["test_size"], params["seed"]
        )
    except ValueError as error:
        sys.exit(f"preprocess: {error}")
    for frame, path in ((train, args.train), (test, args.test)):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
