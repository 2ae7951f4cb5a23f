"""The facts the EDA notebook committed (metrics/eda.json) hold for the raw file, agree with
ingest's report, and are the figures the data card (docs/data.md) quotes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from stages.contract import FEATURE_NAMES, MEDV_CORRECTIONS, TARGET
from tests.conftest import RAW_DATA, REPO

Facts = dict[str, Any]


@pytest.fixture(scope="module")
def eda() -> Facts:
    facts: Facts = json.loads((REPO / "metrics" / "eda.json").read_text())
    return facts


@pytest.fixture(scope="module")
def ingest() -> Facts:
    report: Facts = json.loads((REPO / "metrics" / "ingest.json").read_text())
    return report


@pytest.fixture(scope="module")
def corrected() -> pd.DataFrame:
    """The raw table with Gilley & Pace's fixes applied, computed here without the pipeline."""
    table = pd.read_csv(RAW_DATA)
    for row, (_, fixed) in MEDV_CORRECTIONS.items():
        table.loc[row - 1, TARGET.name] = fixed
    return table


def test_counts_match_the_raw_file(eda: Facts, corrected: pd.DataFrame) -> None:
    raw = pd.read_csv(RAW_DATA)
    assert eda["rows"] == len(raw)
    assert eda["gaps"] == {name: int(raw[name].isna().sum()) for name in raw.columns}
    assert eda["medv_censored_at_max"] == int((raw[TARGET.name] == 50.0).sum())
    block = (raw["RAD"] == 24) & (raw["TAX"] == 666)
    assert eda["rad24_tax666_tracts"] == int(block.sum())
    changed = int((raw[TARGET.name] != corrected[TARGET.name]).sum())
    assert eda["medv_corrected"] == changed


def test_correlations_match_the_raw_file(eda: Facts, corrected: pd.DataFrame) -> None:
    for method in ("pearson", "spearman"):
        for name, value in eda["correlation_with_medv"][method].items():
            expected = corrected[name].corr(corrected[TARGET.name], method=method)
            assert value == pytest.approx(expected, abs=1e-4), (method, name)
    assert "B" not in eda["correlation_with_medv"]["spearman"]  # B is no finding to present


def test_vifs_match_one_regression_per_feature(eda: Facts, corrected: pd.DataFrame) -> None:
    """VIF by its definition, 1 / (1 - R^2) of each input on the others, against the notebook's."""
    used = list(eda["vif"])
    assert set(used) == set(FEATURE_NAMES) - {"B"}
    for name in used:
        others = [other for other in used if other != name]
        r2 = (
            LinearRegression()
            .fit(corrected[others], corrected[name])
            .score(corrected[others], corrected[name])
        )
        assert eda["vif"][name] == pytest.approx(1 / (1 - r2), rel=1e-3), name


def test_eda_agrees_with_ingest(eda: Facts, ingest: Facts) -> None:
    for key in ("rows", "gaps", "rows_with_gaps", "medv_censored_at_max", "medv_corrected"):
        assert eda[key] == ingest[key], key


def _spearman(name: str) -> Callable[[Facts], str]:
    return lambda eda: f"{eda['correlation_with_medv']['spearman'][name]:+.3f}"


# Each row of the data card's "What the data shows" table, and how its value is written from the
# facts.
CARD_FIGURES: dict[str, Callable[[Facts], str]] = {
    "tracts": lambda eda: str(eda["rows"]),
    "empty cells (committed file)": lambda eda: str(sum(eda["gaps"].values())),
    "MEDV at the 50.0 ceiling": lambda eda: str(eda["medv_censored_at_max"]),
    "MEDV corrections applied": lambda eda: str(eda["medv_corrected"]),
    "Spearman rho of LSTAT with MEDV": _spearman("LSTAT"),
    "Spearman rho of RM with MEDV": _spearman("RM"),
    "R^2 of a line / a spline, MEDV on LSTAT": lambda eda: (
        f"{eda['shape_r2']['LSTAT']['line']:.2f} / {eda['shape_r2']['LSTAT']['spline']:.2f}"
    ),
    "tracts with RAD = 24 and TAX = 666": lambda eda: str(eda["rad24_tax666_tracts"]),
    "highest VIF": lambda eda: "{} {:.1f}".format(*max(eda["vif"].items(), key=lambda kv: kv[1])),
    "RMSE cost of dropping B (ridge, 10x3 CV)": lambda eda: (
        f"{eda['b_cost']['rmse_cost_of_dropping_b']:+.3f}"
    ),
}


def test_the_readme_data_card_quotes_the_facts(eda: Facts, ingest: Facts) -> None:
    readme = (REPO / "docs" / "data.md").read_text()
    section = readme.split("### What the data shows", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|", section, flags=re.MULTILINE))
    for label, write in CARD_FIGURES.items():
        assert rows.get(label) == write(eda), f"docs/data.md data card, row {label!r}"
    assert eda["b_cost"]["family"] == "ridge"
    assert rows["MEDV at the 50.0 ceiling"] == str(ingest["medv_censored_at_max"])
    assert rows["MEDV corrections applied"] == str(ingest["medv_corrected"])
