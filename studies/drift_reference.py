"""What the drift rule compares a window with: the training rows, or a larger sample drawn
from them.

A two-sample test of a window of n rows against a reference of m rows sees an effective size of
m*n/(m+n): past a few thousand window rows, a 405-row reference caps it near 405. The candidate
measured here stores a larger smoothed sample instead: `multiple` times the training rows drawn
from a Gaussian copula fitted to those rows alone (interpolated marginals, so it is a smoothed
bootstrap), with the model's predictions on them. It holds no more information than the training
rows, but the test reads its m as if it did; the study measures what that costs in false alarms
when the window comes from the population, not from the training rows. Beside it, an oracle
that no pipeline has: as many rows drawn afresh from the population, the power a genuinely larger
reference would buy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from studies.drift_population import Copula, FloatArray, Population
from studies.simulation import share_cell

Draw = Callable[[Population, FloatArray, np.random.Generator], FloatArray]


@dataclass(frozen=True)
class Reference:
    """A way to turn the training rows into the rows the profile stores."""

    name: str
    draw: Draw


def _as_drawn(population: Population, training: FloatArray, rng: np.random.Generator) -> FloatArray:
    return training


# What the export stage profiles today.
TRAINING = Reference("training rows", _as_drawn)


def smoothed(multiple: int) -> Reference:
    """`multiple` times the training rows, drawn from a copula fitted to the training rows."""
    if multiple < 1:
        raise ValueError(f"a smoothed reference needs a multiple >= 1, got {multiple}")

    def draw(population: Population, training: FloatArray, rng: np.random.Generator) -> FloatArray:
        copula = Copula.fit(training, population.copula.discrete)
        return copula.sample(multiple * training.shape[0], rng)

    return Reference(f"copula of the training rows, x{multiple}", draw)


def fresh(multiple: int) -> Reference:
    """`multiple` times the training rows' count, drawn afresh from the population: an oracle,
    rows the pipeline does not have, showing what a truly larger reference would buy."""
    if multiple < 1:
        raise ValueError(f"a fresh reference needs a multiple >= 1, got {multiple}")

    def draw(population: Population, training: FloatArray, rng: np.random.Generator) -> FloatArray:
        return population.copula.sample(multiple * training.shape[0], rng)

    return Reference(f"oracle: fresh population rows, x{multiple}", draw)


def effective_rows(reference_rows: int, window_rows: int) -> float:
    """The sample size a two-sample test of these two sizes behaves like."""
    return reference_rows * window_rows / (reference_rows + window_rows)


class Counted(Protocol):
    """What the comparison reads of a study row."""

    @property
    def reference(self) -> str: ...
    @property
    def reference_rows(self) -> int: ...
    @property
    def case(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def trials(self) -> int: ...
    @property
    def ours(self) -> int: ...


def comparison(rows: Sequence[Counted], cases: Sequence[str]) -> str:
    """One line per reference and window size: the rule's flagged share in each of `cases`."""
    lines = [
        "| reference | reference rows | window rows | effective rows m*n/(m+n) | trials | "
        + " | ".join(f"{case}: flagged [95% CI]" for case in cases)
        + " |",
        "|---|---:|---:|---:|---:|" + "---|" * len(cases),
    ]
    groups: dict[tuple[str, int], dict[str, Counted]] = {}
    for row in rows:
        if row.case in cases:
            groups.setdefault((row.reference, row.rows), {})[row.case] = row
    # each reference's sizes together, in the order the references came
    order = list(dict.fromkeys(reference for reference, _ in groups))
    for (reference, size), by_case in sorted(
        groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
    ):
        first = next(iter(by_case.values()))
        cells = [
            share_cell(by_case[case].ours, by_case[case].trials) if case in by_case else "-"
            for case in cases
        ]
        lines.append(
            f"| {reference} | {first.reference_rows} | {size} | "
            f"{effective_rows(first.reference_rows, size):.0f} | {first.trials} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)
