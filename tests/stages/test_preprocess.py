from __future__ import annotations

import pandas as pd
import pytest

from stages.preprocess import split


def test_split_is_seeded_disjoint_and_complete(tiny_table: pd.DataFrame) -> None:
    train, test = split(tiny_table, test_size=0.25, seed=3)
    again_train, again_test = split(tiny_table, test_size=0.25, seed=3)
    assert len(test) == 15 and len(train) == 45
    assert set(train.index).isdisjoint(test.index)
    assert sorted([*train.index, *test.index]) == list(tiny_table.index)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(test, again_test)
    assert not split(tiny_table, test_size=0.25, seed=4)[1].index.equals(test.index)


def test_split_stratifies_on_the_target(tiny_table: pd.DataFrame) -> None:
    _, test = split(tiny_table, test_size=0.25, seed=3)
    # every quartile of MEDV is represented in the test split
    quartiles = pd.qcut(tiny_table["MEDV"], 4, labels=False)
    assert set(quartiles[test.index]) == {0, 1, 2, 3}


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.2, 1.5])
def test_test_size_outside_zero_one_is_named(tiny_table: pd.DataFrame, test_size: float) -> None:
    with pytest.raises(ValueError, match=r"preprocess.test_size must lie strictly between 0 and 1"):
        split(tiny_table, test_size=test_size, seed=0)


def test_test_size_leaving_too_few_rows_is_named(tiny_table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"preprocess.test_size 0.01 leaves 1 of 60 rows"):
        split(tiny_table, test_size=0.01, seed=0)
