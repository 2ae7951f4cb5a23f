"""Search spaces: params.yaml's ranges, choices and fixed values read into Optuna's terms, and
every malformed one named by its params key."""

from __future__ import annotations

from typing import Any

import pytest

from stages.families import build
from stages.search import parse_space


@pytest.mark.parametrize(
    ("family", "spec", "message"),
    [
        (
            "gradient_boosting",
            {"learning_rate": {"low": 0.3, "high": 0.1}},
            r"tune.optuna.spaces.gradient_boosting.learning_rate: low \(0.3\) must be below high",
        ),
        (
            "gradient_boosting",
            {"learning_rate": {"low": 0, "high": 0.1, "log": True}},
            "spaces.gradient_boosting.learning_rate: a log scale needs low above 0",
        ),
        (
            "gradient_boosting",
            {"max_depth": {"low": 2, "hihg": 5}},
            "spaces.gradient_boosting.max_depth must be a value, a list of choices or",
        ),
        (
            "gradient_boosting",
            {"max_depth": {"low": "two", "high": 5}},
            r"spaces.gradient_boosting.max_depth.low must be a number, got 'two'",
        ),
        (
            "gradient_boosting",
            {"max_depth": {"low": 2, "high": 5, "log": "yes"}},
            "spaces.gradient_boosting.max_depth.log must be true or false",
        ),
        ("random_forest", {"max_features": []}, "max_features: a list of choices must not be"),
        ("random_forest", {"max_dept": 3}, "spaces.random_forest.max_dept is not a parameter"),
        ("lasso", {"alpha": {"low": 0.1, "high": 1.0}}, "spaces.lasso.alpha: the linear families"),
    ],
)
def test_bad_search_spaces_are_named(family: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_space(family, spec, build(family, alpha=1.0, seed=0))


def test_a_search_space_reads_ranges_choices_and_fixed_values() -> None:
    pipeline = build("elasticnet", alpha=1.0, seed=0)
    space = parse_space(
        "elasticnet",
        {"spline_knots": {"low": 3, "high": 8}, "l1_ratio": [0.2, 0.8], "max_iter": 1000},
        pipeline,
    )
    assert space.fixed == {"model__max_iter": 1000}
    assert set(space.sampled) == {"splines__n_knots", "model__l1_ratio"}
    assert space.size() == 12
    continuous = parse_space("elasticnet", {"l1_ratio": {"low": 0.1, "high": 0.9}}, pipeline)
    assert continuous.size() == float("inf")
