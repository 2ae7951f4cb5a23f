"""The drift study's population: simulated tracts, their predictions, and the rule applied to them.

The population is a Gaussian copula with the empirical marginals, fitted to the real tracts: the
normal scores of each column's ranks give a correlation matrix; a draw is a multivariate normal
sample mapped to uniforms and then to each column's empirical quantile (interpolated for the float
columns; the lower empirical quantile for the integer and binary ones, which keeps RAD and CHAS on
their observed values). So the simulated tracts keep the real marginals and rank correlations, and
there are as many fresh reference and window draws as trials need.

The prediction column comes from the studies' stand-in model (studies.simulation.stand_in), fitted
once on the real rows: the study measures the rule, not the model, and only needs a prediction
column that reacts to input shifts the way the served model's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from monitoring.drift import DriftSettings, Verdict, judge
from stages.contract import FEATURES, TARGET, model_features
from stages.profile import build_profile
from studies.simulation import THREADS, PipelineParams, stand_in

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Copula:
    """A Gaussian copula with the empirical marginals of `data` (rows x columns, no gaps)."""

    data: FloatArray
    discrete: tuple[bool, ...]
    cholesky: FloatArray

    @classmethod
    def fit(cls, data: FloatArray, discrete: Sequence[bool]) -> Copula:
        rows = data.shape[0]
        scores = stats.norm.ppf(stats.rankdata(data, axis=0) / (rows + 1))
        correlation = np.corrcoef(scores, rowvar=False)
        # a whisker of ridge keeps the Cholesky factor defined if two columns were collinear
        correlation += np.eye(correlation.shape[0]) * 1e-10
        return cls(
            np.array(data, dtype=np.float64), tuple(discrete), np.linalg.cholesky(correlation)
        )

    def sample(self, rows: int, rng: np.random.Generator) -> FloatArray:
        normal = rng.standard_normal((rows, self.cholesky.shape[0])) @ self.cholesky.T
        uniform = stats.norm.cdf(normal)
        columns = [
            np.quantile(
                self.data[:, j], uniform[:, j], method="inverted_cdf" if discrete else "linear"
            )
            for j, discrete in enumerate(self.discrete)
        ]
        return np.column_stack(columns).astype(np.float64)


@dataclass(frozen=True)
class Population:
    """Everything fixed once: the column facts, the copula and the stand-in fitted to the real
    table, and the pipeline's split, folds and profile bins."""

    features: tuple[str, ...]
    categorical: frozenset[str]
    real: FloatArray  # the real rows' model inputs
    target: FloatArray
    sd: dict[str, float]  # each input's standard deviation over the real rows (ddof=1)
    copula: Copula
    model: Pipeline
    reference_rows: int  # the training split's size
    folds: int  # the export stage's folds for its out-of-fold reference predictions
    bins: int  # the reference profile's bins

    def predict(self, inputs: FloatArray) -> FloatArray:
        with threadpool_limits(limits=THREADS):
            return np.asarray(self.model.predict(inputs), dtype=np.float64)

    def profile(self, inputs: FloatArray, predictions: FloatArray) -> dict[str, Any]:
        """The reference profile of `inputs`, built by the export stage's own builder."""
        return build_profile(
            {name: inputs[:, j] for j, name in enumerate(self.features)},
            categorical=set(self.categorical),
            predictions=predictions,
            model_version="calibration-stand-in",
            bins=self.bins,
        )

    def judge(
        self,
        profile: dict[str, Any],
        window: FloatArray,
        predictions: FloatArray,
        settings: DriftSettings,
    ) -> Verdict:
        """The drift rule (monitoring.drift.judge) on a window of rows x features."""
        columns = {name: window[:, j] for j, name in enumerate(self.features)}
        return judge(profile, columns, predictions, settings)


def fit_population(table: pd.DataFrame, params: PipelineParams) -> Population:
    """Fit the copula and the stand-in model to the real table's complete rows."""
    features = model_features(params.drop)
    missing = [name for name in [*features, TARGET.name] if name not in table.columns]
    if missing:
        raise ValueError(f"the data lacks column(s) {missing}")
    complete = table[[*features, TARGET.name]].dropna()
    real = complete[features].to_numpy(dtype=np.float64)
    target = complete[TARGET.name].to_numpy(dtype=np.float64)
    kinds = {column.name: column.kind for column in FEATURES}
    discrete = [kinds[name] != "float" for name in features]
    with threadpool_limits(limits=THREADS):
        model = stand_in().fit(real, target)
    return Population(
        features=tuple(features),
        categorical=frozenset(name for name, flag in zip(features, discrete, strict=True) if flag),
        real=real,
        target=target,
        sd={name: float(real[:, j].std(ddof=1)) for j, name in enumerate(features)},
        copula=Copula.fit(real, discrete),
        model=model,
        reference_rows=len(real) - params.test_rows(len(real)),
        folds=params.folds,
        bins=params.reference_bins,
    )
