"""Column-wise validation of columnar bodies (`dataframe_split`, column-wise `inputs`/`instances`).

Validating 10,000 rows one dict at a time made /invocations no faster than `mlflow models serve`.
Here the whole table is checked with a few numpy operations per column, against the same
`field_rules` the row schema is built from, and becomes the model's float64 matrix directly.

The verdict is made column by column; the explanation is not. Rows found bad are handed, one by
one, to the row schema itself, so a 422 carries exactly the errors (loc, msg, type, input) the row
path gives, in the same order, without a second copy of any message. Anything this module does
not decide with certainty (an empty table, integers too large for a float, a row it flags that
the row schema accepts) is left to the row path: `matrix` returns None.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from api.schemas import FieldRule, Row, field_rules

# JSON values the strict row schema can accept as a field's value (bool is not int here: type())
_SCALARS = frozenset({int, float, type(None)})


class TableInvalid(Exception):
    """Some rows break the contract; `errors` are the row schema's, loc (row, field, ...)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid values")
        self.errors = errors


@dataclass(frozen=True)
class Table:
    """A columnar body: column names, and its values either as rows or as columns."""

    columns: list[str]
    values: Sequence[Sequence[Any]]
    by_row: bool  # True: values[row][column] (dataframe_split); False: values[column][row]

    def __len__(self) -> int:
        if self.by_row:
            return len(self.values)
        return len(self.values[0]) if self.values else 0

    def rows(self) -> Sequence[Sequence[Any]]:
        return self.values if self.by_row else list(zip(*self.values, strict=True))

    def record(self, index: int) -> dict[str, Any]:
        """Row `index` as the equivalent records body would send it."""
        if self.by_row:
            return dict(zip(self.columns, self.values[index], strict=True))
        return {name: column[index] for name, column in zip(self.columns, self.values, strict=True)}


class Records(Sequence[Row]):
    """A table's rows as dicts, built only when read (by the prediction log, after the response)."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._table.record(i) for i in range(len(self))[index]]
        return self._table.record(index)

    def __iter__(self) -> Iterator[Row]:
        columns = self._table.columns
        for row in self._table.rows():
            yield dict(zip(columns, row, strict=True))


class ColumnarValidator:
    """Validates a `Table` against the card's contract and builds the model's input matrix."""

    def __init__(self, card: dict[str, Any], house: TypeAdapter[Row], inputs: list[str]) -> None:
        self.rules = {rule.name: rule for rule in field_rules(card)}
        self.required = [rule.name for rule in self.rules.values() if rule.required]
        self.house = house
        self.inputs = inputs

    def matrix(self, table: Table) -> np.ndarray | None:
        """The float64 matrix in `inputs` order (NaN where unknown), TableInvalid with the row
        schema's errors, or None where the row path must decide."""
        count = len(table)
        if count == 0:
            return None  # the row schema's own "at least 1 item" message
        known = set(table.columns) <= self.rules.keys()
        if not known or not set(self.required) <= set(table.columns):
            # an unknown or missing column is an error in every row
            self._explain(table, range(count))
            return None
        values, clean = self._numbers(table)
        if values is None:
            return None
        bad = ~clean
        for position, name in enumerate(table.columns):
            bad |= _breaks(self.rules[name], values[:, position])
        if bad.any():
            self._explain(table, np.flatnonzero(bad).tolist())
            return None
        matrix = np.full((count, len(self.inputs)), np.nan)
        position_of = {name: position for position, name in enumerate(table.columns)}
        for target, name in enumerate(self.inputs):
            if name in position_of:  # a nullable input left out is unknown in every row
                matrix[:, target] = values[:, position_of[name]]
        return matrix

    def _numbers(self, table: Table) -> tuple[np.ndarray | None, np.ndarray]:
        """The table as float64 (rows x columns), None (null) as NaN, and which rows hold only
        numbers and nulls. JSON gives no NaN (the parser refuses it), so NaN means null."""
        count, width = len(table), len(table.columns)
        # one pass in C over every value: the common case is all numbers
        kinds = set(map(type, chain.from_iterable(table.values)))
        try:
            if kinds <= _SCALARS:
                values = np.array(table.values, dtype=np.float64)
                return (values if table.by_row else values.T), np.ones(count, dtype=bool)
            # strings, booleans or containers somewhere: find their rows, convert the others
            rows = table.rows()
            clean = np.fromiter(
                (all(type(value) in _SCALARS for value in row) for row in rows), bool, count
            )
            values = np.full((count, width), np.nan)
            chosen = np.flatnonzero(clean).tolist()
            if chosen:
                values[chosen] = np.array([rows[i] for i in chosen], dtype=np.float64)
        except OverflowError:  # an integer beyond float range: the row schema words that
            return None, np.zeros(count, dtype=bool)
        return values, clean

    def _explain(self, table: Table, rows: Sequence[int]) -> None:
        """Raise the row schema's errors for `rows`; return if it finds none (the row path then
        decides: flagged here but accepted there)."""
        errors: list[dict[str, Any]] = []
        for index in rows:
            try:
                self.house.validate_python(table.record(index))
            except ValidationError as error:
                errors.extend(
                    {"loc": [index, *item["loc"]], "msg": item["msg"], "type": item["type"],
                     "input": item.get("input")}
                    for item in error.errors(include_url=False, include_context=False)
                )  # fmt: skip
        if errors:
            raise TableInvalid(errors)


def _breaks(rule: FieldRule, column: np.ndarray) -> np.ndarray:
    """Which values of `column` the row schema rejects for `rule` (NaN standing for null)."""
    null = np.isnan(column)
    # NaN compares false, so the bounds test sees only numbers; infinity fails a bound as well
    bad = (column < rule.minimum) | (column > rule.maximum) | np.isinf(column)
    if not rule.nullable:
        bad |= null
    if rule.kind == "binary":
        bad |= (column != 0.0) & (column != 1.0) & ~null
    elif rule.kind == "integer":
        with np.errstate(invalid="ignore"):
            bad |= (np.floor(column) != column) & ~null
    return np.asarray(bad, dtype=bool)
