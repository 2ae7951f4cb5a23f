"""The data contract: every fact about the columns of the Boston Housing table lives here.

Ingest validates against it, export copies it into the model card, and the API builds its request
schema from that card, so a column's name, kind and physical bounds are written down exactly once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["float", "integer", "binary"]


@dataclass(frozen=True)
class Column:
    """One raw column: its meaning, its physically possible values, whether it may be empty."""

    name: str
    description: str
    kind: Kind
    minimum: float
    maximum: float
    # Gaps in these columns occur in real copies of the data (the Kaggle file) and are imputed by
    # the model Pipeline; a gap anywhere else is an error.
    nullable: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FEATURES: tuple[Column, ...] = (
    Column("CRIM", "per-capita crime rate by town", "float", 0.0, 100.0, True),
    Column(
        "ZN", "% of residential land zoned for lots over 25,000 sq.ft.", "float", 0.0, 100.0, True
    ),
    Column("INDUS", "% of non-retail business acres per town", "float", 0.0, 100.0, True),
    Column("CHAS", "1 if the tract bounds the Charles River, else 0", "binary", 0.0, 1.0, True),
    Column("NOX", "nitric oxides concentration (parts per 10 million)", "float", 0.0, 1.0, False),
    Column("RM", "average number of rooms per dwelling", "float", 1.0, 15.0, False),
    Column("AGE", "% of owner-occupied units built before 1940", "float", 0.0, 100.0, True),
    Column("DIS", "weighted distance to five Boston employment centres", "float", 0.0, 50.0, False),
    Column("RAD", "index of accessibility to radial highways", "integer", 1.0, 24.0, False),
    Column("TAX", "full-value property-tax rate per $10,000", "float", 0.0, 1000.0, False),
    Column("PTRATIO", "pupil-teacher ratio by town", "float", 1.0, 50.0, False),
    # B = 1000 (Bk - 0.63)^2 with Bk a share in [0, 1], so B cannot exceed 1000 * 0.63^2.
    Column("B", "1000(Bk - 0.63)^2, Bk the share of Black residents", "float", 0.0, 396.9, False),
    Column("LSTAT", "% lower status of the population", "float", 0.0, 100.0, True),
)

# MEDV was recorded with a ceiling: every tract worth more than $50,000 reads 50.0.
TARGET = Column("MEDV", "median value of owner-occupied homes in $1000s", "float", 0.0, 50.0, False)

FEATURE_NAMES: tuple[str, ...] = tuple(column.name for column in FEATURES)
COLUMNS: tuple[Column, ...] = (*FEATURES, TARGET)

# Gilley & Pace (1996) found 8 miscoded MEDV values. 1-based data row -> (recorded, corrected).
MEDV_CORRECTIONS: dict[int, tuple[float, float]] = {
    8: (27.1, 22.1),
    39: (24.7, 24.2),
    191: (37.0, 33.0),
    241: (22.0, 27.0),
    438: (8.7, 8.2),
    443: (18.4, 14.8),
    455: (14.9, 14.4),
    506: (11.9, 19.0),
}


def model_features(drop: list[str]) -> list[str]:
    """The raw columns the model is fitted on, in contract order, after `features.drop`."""
    unknown = sorted(set(drop) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(
            f"params features.drop names unknown column(s) {unknown}; "
            f"choose from {list(FEATURE_NAMES)}"
        )
    used = [name for name in FEATURE_NAMES if name not in drop]
    if not used:
        raise ValueError("params features.drop removes every feature; keep at least one")
    return used
