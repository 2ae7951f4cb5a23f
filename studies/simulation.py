"""What the studies share: the pipeline's settings they mirror, their command line, the stand-in
model whose real errors they resample, and how they print a simulated rate."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from conformal import wilson
from stages.contract import TARGET, model_features
from stages.files import pipeline_path

PARAMS = Path("params.yaml")
# The studies make thousands of small model calls: OpenMP threads do not pay off on them, and on a
# busy machine they spin against each other.
THREADS = 1
# Folds of the stand-in's out-of-fold residuals, the real errors the studies resample.
RESIDUAL_FOLDS = 5


@dataclass(frozen=True)
class PipelineParams:
    """The params.yaml values a study mirrors, so that it simulates what the pipeline does."""

    drop: list[str]  # features.drop: the model's inputs
    test_size: float  # preprocess.test_size: the card's test split
    folds: int  # tune.cv.folds: also the export stage's out-of-fold reference predictions
    bootstrap: int  # evaluate.bootstrap: the card's intervals
    reference_bins: int  # monitoring.reference_bins: the profile's bins
    alpha: float  # monitoring.alpha: the drift rule's level
    min_rows: int  # monitoring.min_rows: the drift rule's smallest window
    margin: float  # retrain.margin: the promotion rule's margin
    retrain_bootstrap: int  # retrain.bootstrap: the promotion rule's paired bootstrap

    @classmethod
    def read(cls, path: Path) -> PipelineParams:
        params: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        try:
            return cls(
                drop=list(params["features"]["drop"]),
                test_size=float(params["preprocess"]["test_size"]),
                folds=int(params["tune"]["cv"]["folds"]),
                bootstrap=int(params["evaluate"]["bootstrap"]),
                reference_bins=int(params["monitoring"]["reference_bins"]),
                alpha=float(params["monitoring"]["alpha"]),
                min_rows=int(params["monitoring"]["min_rows"]),
                margin=float(params["retrain"]["margin"]),
                retrain_bootstrap=int(params["retrain"]["bootstrap"]),
            )
        except KeyError as error:
            raise ValueError(f"{path} lacks {error.args[0]!r}, which the studies read") from None

    def test_rows(self, rows: int) -> int:
        """The test split's size out of `rows`, counted as the preprocess stage counts it."""
        return round(rows * self.test_size)


def simulation_parser(doc: str | None, trials: int, seed: int) -> argparse.ArgumentParser:
    """The options every study takes: the real data, the params, the trials, the seed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--data", type=Path, help="the raw table (default: dvc.yaml's raw)")
    parser.add_argument("--params", type=Path, default=PARAMS)
    parser.add_argument("--trials", type=_positive, default=trials)
    parser.add_argument("--seed", type=int, default=seed)
    return parser


def read_data(args: argparse.Namespace) -> tuple[Path, pd.DataFrame]:
    """The real table the study resamples: --data, or the pipeline's raw table."""
    path: Path = args.data or pipeline_path("raw")
    return path, pd.read_csv(path)


def stand_in() -> Pipeline:
    """The stand-in model: a fixed, fast boosted model behind the served model's imputation.

    The studies measure rules, not the model: they need predictions and errors that behave like
    the served model's, and a fixed stand-in keeps every trial deterministic.
    """
    return Pipeline(
        [
            # the served model imputes gaps with the training median; a bare HistGradientBoosting
            # fitted without gaps would send them all down its majority branches instead
            ("impute", SimpleImputer(strategy="median")),
            ("model", HistGradientBoostingRegressor(random_state=0, max_iter=200)),
        ]
    )


def residuals_of(table: pd.DataFrame, drop: list[str], seed: int) -> np.ndarray:
    """Out-of-fold residuals of the stand-in model over the real tracts with a known price."""
    features = model_features(drop)
    complete = table.dropna(subset=[TARGET.name])
    inputs = complete[features].to_numpy(dtype=np.float64)
    actual = complete[TARGET.name].to_numpy(dtype=np.float64)
    folds = KFold(RESIDUAL_FOLDS, shuffle=True, random_state=seed)
    with threadpool_limits(limits=THREADS):
        predicted = np.asarray(cross_val_predict(stand_in(), inputs, actual, cv=folds))
    residuals: np.ndarray = actual - predicted
    return residuals


@dataclass(frozen=True)
class RealResiduals:
    """The stand-in model's out-of-fold residuals over the real tracts, and the rows a test split
    of them holds (what the card's and the flow's figures are computed on)."""

    values: np.ndarray
    test_rows: int

    @classmethod
    def read(cls, args: argparse.Namespace, params: PipelineParams) -> RealResiduals:
        _, data = read_data(args)
        values = residuals_of(data, params.drop, args.seed)
        return cls(values, params.test_rows(len(values)))

    def describe(self) -> str:
        rmse = np.sqrt(np.mean(self.values**2))
        return f"out-of-fold residuals of {len(self.values)} real tracts (RMSE {rmse:.2f})"


def share_cell(count: int, trials: int) -> str:
    """A simulated rate with its 95% Wilson interval, as the studies print it."""
    low, high = wilson(count, trials)
    return f"{count / trials:6.1%} [{low:.1%}, {high:.1%}]"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value
