"""Ingest: read the raw CSV as text, check each cell against the data contract, write a typed table.

Gaps (`NA` or empty) in nullable columns stay gaps: the model Pipeline imputes them, fitted on
training folds only. Anything else that breaks the contract stops the pipeline here, with a message
naming the column and the first offending lines, before any output is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.contract import COLUMNS, MEDV_CORRECTIONS, TARGET, Column
from stages.files import load_params, write_json

# Spellings of "no value" found in real copies of the data.
MISSING_MARKERS = frozenset({"", "NA", "N/A", "NaN", "nan", "null"})
_SHOWN = 5  # offending lines listed per problem; the count says how many there are in all


class DataValidationError(ValueError):
    """The raw data breaks the contract; the message names every column and line at fault."""


def read_raw(path: Path) -> pd.DataFrame:
    """Read every cell as text, so validation sees exactly what the file holds."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"{path} is empty: expected a header and data rows") from None


def validate(raw: pd.DataFrame, correct_medv: bool) -> pd.DataFrame:
    """Return the typed table (float64 columns in contract order, gaps as NaN) or raise."""
    raw = raw.rename(columns=lambda name: str(name).strip())
    _check_columns(raw)
    if raw.empty:
        raise DataValidationError("the file has a header but no data rows")
    problems: list[str] = []
    table = pd.DataFrame(
        {column.name: _parse_column(raw[column.name], column, problems) for column in COLUMNS}
    )
    if problems:
        raise DataValidationError("invalid data:\n  " + "\n  ".join(problems))
    if correct_medv:
        table[TARGET.name] = _corrected_medv(table[TARGET.name])
    return table


def summarise(table: pd.DataFrame, medv_corrected: int) -> dict[str, Any]:
    """The figures ingest reports in metrics/ingest.json."""
    gaps = table.isna().sum()
    return {
        "rows": len(table),
        "gaps": {name: int(gaps[name]) for name in table.columns},
        "rows_with_gaps": int(table.isna().any(axis=1).sum()),
        "duplicate_rows": int(table.duplicated().sum()),
        "medv_censored_at_max": int((table[TARGET.name] >= TARGET.maximum).sum()),
        "medv_corrected": medv_corrected,
    }


def _check_columns(raw: pd.DataFrame) -> None:
    expected = [column.name for column in COLUMNS]
    missing = [name for name in expected if name not in raw.columns]
    unknown = [name for name in raw.columns if name not in expected]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if unknown:
        problems.append(f"unknown column(s) {unknown}")
    if problems:
        raise DataValidationError(
            "; ".join(problems) + f". Expected exactly these columns: {expected}"
        )


def _parse_column(text: pd.Series, column: Column, problems: list[str]) -> pd.Series:
    text = text.str.strip()
    gap = text.isin(MISSING_MARKERS)
    values = pd.to_numeric(text.where(~gap), errors="coerce").astype("float64")

    def report(bad: pd.Series, what: str) -> None:
        if bad.any():
            problems.append(f"column {column.name!r}: {int(bad.sum())} {what} {_lines(text, bad)}")

    report(values.isna() & ~gap, "value(s) that are not numbers")
    if not column.nullable:
        report(gap, "missing value(s), which this column does not allow")
    present = values.notna()
    outside = present & ((values < column.minimum) | (values > column.maximum))
    report(outside, f"value(s) outside the physical bounds [{column.minimum}, {column.maximum}]")
    if column.kind == "binary":
        report(present & ~outside & ~values.isin([0.0, 1.0]), "value(s) other than 0 or 1")
    elif column.kind == "integer":
        report(present & ~outside & (values != np.floor(values)), "value(s) that are not whole")
    return values


def _lines(text: pd.Series, bad: pd.Series) -> str:
    # Line 1 of the file is the header, so data row i (0-based) sits on line i + 2.
    shown = [f"line {index + 2} ({text[index]!r})" for index in bad[bad].index[:_SHOWN]]
    more = int(bad.sum()) - len(shown)
    return "at " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _corrected_medv(medv: pd.Series) -> pd.Series:
    corrected = medv.copy()
    for row, (recorded, fixed) in MEDV_CORRECTIONS.items():
        index = row - 1
        if index >= len(medv) or not np.isclose(medv[index], recorded):
            found = "no such row" if index >= len(medv) else f"found {medv[index]}"
            raise DataValidationError(
                f"column 'MEDV': the Gilley & Pace correction expects {recorded} at line "
                f"{row + 1}, {found}. This is not the Boston Housing table in its usual order; "
                "set ingest.correct_medv: false in params.yaml to ingest it uncorrected"
            )
        corrected[index] = fixed
    return corrected


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params("ingest")

    correct_medv = bool(params["ingest"]["correct_medv"])
    try:
        table = validate(read_raw(args.raw), correct_medv)
    except DataValidationError as error:
        sys.exit(f"ingest: {args.raw}: {error}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, lineterminator="\n")
    write_json(args.report, summarise(table, len(MEDV_CORRECTIONS) if correct_medv else 0))


if __name__ == "__main__":
    main()
