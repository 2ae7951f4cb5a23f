"""Data tests on the committed raw table: each check says what it protects."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from stages.contract import COLUMNS, FEATURES, TARGET
from tests.conftest import RAW_DATA

CANONICAL_SHA256 = "fd6aae7c42ed5998b4157a6149aa35d47c60fc0664c5bcfea5f3df4f423376cc"


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(RAW_DATA)


def test_raw_file_is_the_canonical_table() -> None:
    # Raw data is immutable: any edit changes every downstream hash, so it must be deliberate.
    assert hashlib.sha256(RAW_DATA.read_bytes()).hexdigest() == CANONICAL_SHA256


def test_schema_is_the_contract(raw: pd.DataFrame) -> None:
    assert list(raw.columns) == [column.name for column in COLUMNS]
    assert len(raw) == 506
    assert all(pd.api.types.is_numeric_dtype(dtype) for dtype in raw.dtypes)


def test_values_lie_within_physical_bounds(raw: pd.DataFrame) -> None:
    for column in COLUMNS:
        assert raw[column.name].between(column.minimum, column.maximum).all(), column.name


def test_binary_and_integer_columns(raw: pd.DataFrame) -> None:
    for column in FEATURES:
        if column.kind == "binary":
            assert set(raw[column.name]) == {0, 1}
        if column.kind == "integer":
            assert (raw[column.name] % 1 == 0).all()


def test_no_duplicate_rows(raw: pd.DataFrame) -> None:
    # A duplicated tract could sit on both sides of the split and flatter the test score.
    assert not raw.duplicated().any()


def test_target_is_censored_at_50(raw: pd.DataFrame) -> None:
    # 16 tracts read exactly 50.0: the recorded ceiling, not real prices (docs/data.md).
    assert raw[TARGET.name].max() == 50.0
    assert (raw[TARGET.name] == 50.0).sum() == 16


def test_harrison_rubinfeld_sanity_check(raw: pd.DataFrame) -> None:
    # Their hedonic OLS on log(MEDV) reaches R^2 = 0.81 in sample; far off means the data is wrong.
    X = pd.DataFrame(
        {
            "RM2": raw.RM**2, "AGE": raw.AGE, "logDIS": np.log(raw.DIS),
            "logRAD": np.log(raw.RAD), "TAX": raw.TAX, "PTRATIO": raw.PTRATIO, "B": raw.B,
            "logLSTAT": np.log(raw.LSTAT), "CRIM": raw.CRIM, "ZN": raw.ZN, "INDUS": raw.INDUS,
            "CHAS": raw.CHAS, "NOX2": raw.NOX**2,
        }
    )  # fmt: skip
    design = np.column_stack([np.ones(len(X)), X.to_numpy()])
    target = np.log(raw[TARGET.name].to_numpy())
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    r2 = 1 - residual.var() / target.var()
    assert r2 == pytest.approx(0.806, abs=0.005)
