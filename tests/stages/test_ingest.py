"""Ingest: the Kaggle form of the file is accepted as is; every kind of invalid input is refused
with a message that names the column and the offending lines."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.contract import FEATURE_NAMES, MEDV_CORRECTIONS
from stages.ingest import DataValidationError, read_raw, summarise, validate
from tests.conftest import KAGGLE_GAP_COLUMNS, RAW_DATA, kaggle_copy


def raw_from(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)


def canonical_raw() -> pd.DataFrame:
    return read_raw(RAW_DATA)


def test_kaggle_form_is_accepted_with_gaps_kept(tmp_path: Path) -> None:
    path = kaggle_copy(tmp_path / "HousingData.csv")
    assert b"\r\n" in path.read_bytes()
    assert path.read_text().startswith("CRIM,ZN,")  # unquoted header
    # pandas' own reading of this file makes CHAS a float column, as users see it
    assert pd.read_csv(path)["CHAS"].dtype == np.float64

    table = validate(read_raw(path), correct_medv=False)

    assert len(table) == 506
    assert list(table.columns) == [*FEATURE_NAMES, "MEDV"]
    assert (table[KAGGLE_GAP_COLUMNS].isna().sum() == 20).all()
    assert table.drop(columns=KAGGLE_GAP_COLUMNS).notna().all().all()
    canonical = validate(canonical_raw(), correct_medv=False)
    present = table.notna()
    assert (table[present] == canonical[present]).sum().sum() == present.sum().sum()


def test_canonical_table_summary() -> None:
    table = validate(canonical_raw(), correct_medv=True)
    summary = summarise(table, medv_corrected=len(MEDV_CORRECTIONS))
    assert summary["rows"] == 506
    assert summary["rows_with_gaps"] == 0
    assert summary["duplicate_rows"] == 0
    assert summary["medv_censored_at_max"] == 16


def test_medv_corrections_apply_gilley_pace() -> None:
    raw = validate(canonical_raw(), correct_medv=False)["MEDV"]
    corrected = validate(canonical_raw(), correct_medv=True)["MEDV"]
    changed = sorted(int(i) + 1 for i in np.flatnonzero(raw.to_numpy() != corrected.to_numpy()))
    assert changed == sorted(MEDV_CORRECTIONS)
    assert corrected[505] == 19.0 and raw[505] == 11.9


def test_medv_correction_refuses_a_table_in_another_order() -> None:
    shuffled = canonical_raw().iloc[::-1].reset_index(drop=True)
    with pytest.raises(DataValidationError, match=r"'MEDV'.*Gilley & Pace.*correct_medv"):
        validate(shuffled, correct_medv=True)


def _broken(column: str, line: int, value: str) -> pd.DataFrame:
    raw = canonical_raw()
    raw.loc[line - 2, column] = value
    return raw


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("RM", "six", "not numbers"),
        ("NOX", "0.5.1", "not numbers"),
        ("RM", "-3", "outside the physical bounds"),
        ("AGE", "140", "outside the physical bounds"),
        ("TAX", "inf", "outside the physical bounds"),
        ("CHAS", "0.5", "other than 0 or 1"),
        ("RAD", "2.5", "not whole"),
        ("MEDV", "NA", "missing value"),
        ("MEDV", "", "missing value"),
        ("RM", "NA", "missing value"),
    ],
)
def test_invalid_cell_names_column_and_line(column: str, value: str, message: str) -> None:
    with pytest.raises(DataValidationError) as caught:
        validate(_broken(column, 42, value), correct_medv=False)
    text = str(caught.value)
    assert f"column {column!r}" in text
    assert message in text
    assert f"line 42 ({value!r})" in text


def test_gaps_in_nullable_columns_are_not_errors() -> None:
    table = validate(_broken("LSTAT", 10, "NA"), correct_medv=False)
    assert table["LSTAT"].isna().iloc[8]


def test_many_bad_lines_are_counted_and_the_first_ones_shown() -> None:
    raw = canonical_raw()
    raw.loc[0:29, "RM"] = "x"
    with pytest.raises(DataValidationError, match=r"'RM': 30 value\(s\).*line 2 .*and 25 more"):
        validate(raw, correct_medv=False)


def test_every_problem_is_reported_at_once() -> None:
    raw = _broken("RM", 5, "big")
    raw.loc[10, "CHAS"] = "3"
    with pytest.raises(DataValidationError) as caught:
        validate(raw, correct_medv=False)
    assert "'RM'" in str(caught.value) and "'CHAS'" in str(caught.value)


def test_missing_column_is_named() -> None:
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['LSTAT'\]"):
        validate(canonical_raw().drop(columns="LSTAT"), correct_medv=False)


def test_unknown_column_is_named() -> None:
    raw = canonical_raw().assign(CMEDV="1")
    with pytest.raises(DataValidationError, match=r"unknown column\(s\) \['CMEDV'\]"):
        validate(raw, correct_medv=False)


def test_header_only_file_is_refused() -> None:
    header = ",".join([*FEATURE_NAMES, "MEDV"]) + "\n"
    with pytest.raises(DataValidationError, match="no data rows"):
        validate(raw_from(header), correct_medv=False)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "HousingData.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match=re.escape(f"{empty} is empty")):
        read_raw(empty)
